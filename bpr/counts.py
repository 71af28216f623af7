"""Species counts from detections or labels: per-frame counts, MaxN, mean count, frames present, CSV.

MaxN (the largest number of a species seen in one frame of a video) is the standard conservative
abundance measure of underwater video ecology: it never counts one animal twice. Mean count is over
*every* frame that was looked at (frames where nothing was found count as 0), so detection runs record
which frames they processed; label counts use the labeled frames.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bpr.store import Project

SUMMARY_COLUMNS = ["video", "species", "maxn", "maxn_frame", "maxn_time_s", "maxn_timecode",
                   "mean_count", "frames_present", "frames_counted", "threshold", "run"]


@dataclass
class CountSource:
    """Where counts come from: a detection run at confidence thresholds, or the labels."""

    run: str | None = None                     # None: count labeled boxes
    conf: float = 0.25                          # detections at or above this confidence count
    species_conf: dict[str, float] = field(default_factory=dict)  # per-species overrides
    label_statuses: tuple[str, ...] = ("partial", "full")          # which labeled frames (labels only)

    def threshold_for(self, species: str) -> float | None:
        if self.run is None:
            return None
        by_lower = {k.lower(): v for k, v in self.species_conf.items()}
        return by_lower.get(species.lower(), self.conf)


def _run_id(project: Project, source: CountSource) -> int:
    return project.run(source.run)["id"]


def _threshold_sql(project: Project, source: CountSource) -> tuple[str, list]:
    """A SQL expression giving each detection's threshold (per-species overrides, else the default)."""
    if not source.species_conf:
        return "?", [source.conf]
    ids = {s["name"].lower(): s["id"] for s in project.species()}
    unknown = [name for name in source.species_conf if name.lower() not in ids]
    if unknown:
        raise ValueError(f"unknown species in thresholds: {unknown}")
    cases = " ".join("WHEN ? THEN ?" for _ in source.species_conf)
    params = [v for name, conf in source.species_conf.items() for v in (ids[name.lower()], conf)]
    return f"(CASE d.species_id {cases} ELSE ? END)", params + [source.conf]


def _counted_cte(project: Project, source: CountSource, video: str | None) -> tuple[str, list]:
    """SQL for a CTE ``counted(video_id, frame_index, species_id, n)`` with n >= 1, and its params."""
    video_filter, video_params = ("AND {t}.video_id = ?", [video]) if video else ("", [])
    if source.run is None:
        statuses = ",".join("?" * len(source.label_statuses))
        sql = (f"SELECT b.video_id, b.frame_index, b.species_id, count(*) AS n FROM boxes b "
               f"JOIN frames f USING (video_id, frame_index) WHERE f.label_status IN ({statuses}) "
               f"{video_filter.format(t='b')} GROUP BY b.video_id, b.frame_index, b.species_id")
        return sql, [*source.label_statuses, *video_params]
    threshold, params = _threshold_sql(project, source)
    sql = (f"SELECT d.video_id, d.frame_index, d.species_id, count(*) AS n FROM detections d "
           f"WHERE d.run_id = ? AND d.confidence >= {threshold} {video_filter.format(t='d')} "
           f"GROUP BY d.video_id, d.frame_index, d.species_id")
    return sql, [_run_id(project, source), *params, *video_params]


def _counted_frames(project: Project, source: CountSource, video: str | None) -> tuple[str, list]:
    """SQL selecting (video_id, frame_index) of every frame counts are over, and its params: the
    labeled frames of the chosen statuses, or the frames the detection run processed."""
    video_filter, video_params = ("AND video_id = ?", [video]) if video else ("", [])
    if source.run is None:
        statuses = ",".join("?" * len(source.label_statuses))
        return (f"SELECT video_id, frame_index FROM frames WHERE label_status IN ({statuses}) {video_filter}",
                [*source.label_statuses, *video_params])
    return (f"SELECT video_id, frame_index FROM detected_frames WHERE run_id = ? {video_filter}",
            [_run_id(project, source), *video_params])


def _frames_counted(project: Project, source: CountSource, video: str | None) -> dict[str, int]:
    frames, params = _counted_frames(project, source, video)
    return dict(project.conn.execute(
        f"SELECT video_id, count(*) FROM ({frames}) GROUP BY video_id", params).fetchall())


def _species_ids(project: Project, source: CountSource) -> list[int]:
    """The species a table has columns/rows for: those the run's model looks for and any it detected
    (at any confidence), or any labeled in the counted frames. Moving the threshold changes counts,
    never the columns."""
    if source.run is None:
        statuses = ",".join("?" * len(source.label_statuses))
        rows = project.conn.execute(
            f"SELECT DISTINCT b.species_id FROM boxes b JOIN frames f USING (video_id, frame_index) "
            f"WHERE f.label_status IN ({statuses})", source.label_statuses)
    else:
        run = project.run(source.run)
        rows = project.conn.execute("SELECT DISTINCT species_id FROM detections WHERE run_id = ?",
                                    (run["id"],))
    names = {s["id"]: s["name"] for s in project.species()}
    ids = {r[0] for r in rows}
    if source.run is not None:  # the classes detection recorded: species looked for, found or not
        by_name = {name.lower(): i for i, name in names.items()}
        ids |= {by_name[c.lower()] for c in (run["summary"] or {}).get("classes", []) if c.lower() in by_name}
    return sorted(ids, key=lambda i: names[i].lower())


def timecode(seconds: float | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:06.3f}"


def video_summary(project: Project, source: CountSource, video: str | None = None) -> list[dict]:
    """One row per (video, species): MaxN with its first frame and time, mean count, frames present.

    Every species of the source (see _species_ids) gets a row in every counted video (MaxN 0 where
    absent).
    """
    counted, params = _counted_cte(project, source, video)
    # Aggregate, then join back for the first frame reaching MaxN: a third of the time of ranking
    # every (frame, species) row with a window function (benchmarks/bench_counts.py).
    query = f"""
        WITH counted AS ({counted}),
        agg AS (SELECT video_id, species_id, max(n) AS maxn, sum(n) AS total, count(*) AS present
                FROM counted GROUP BY video_id, species_id)
        SELECT a.video_id, a.species_id, a.maxn, min(c.frame_index), a.total, a.present
        FROM counted c JOIN agg a ON a.video_id = c.video_id AND a.species_id = c.species_id AND c.n = a.maxn
        GROUP BY a.video_id, a.species_id
    """
    found = {(v, s): (n, f, total, present)
             for v, s, n, f, total, present in project.conn.execute(query, params)}
    frames_counted = _frames_counted(project, source, video)
    names = {s["id"]: s["name"] for s in project.species()}
    fps = {v["id"]: v["fps"] for v in project.videos()}
    species_ids = _species_ids(project, source)
    rows = []
    for vid in sorted(frames_counted):
        for sid in species_ids:
            n, frame, total, present = found.get((vid, sid), (0, None, 0, 0))
            seconds = frame / fps[vid] if frame is not None and fps.get(vid) else None
            rows.append({
                "video": vid, "species": names[sid], "maxn": n, "maxn_frame": frame,
                "maxn_time_s": None if seconds is None else round(seconds, 3),
                "maxn_timecode": timecode(seconds),
                "mean_count": total / frames_counted[vid] if frames_counted[vid] else 0.0,
                "frames_present": present, "frames_counted": frames_counted[vid],
                "threshold": source.threshold_for(names[sid]), "run": source.run or "labels",
            })
    return rows


def frame_counts(project: Project, source: CountSource, video: str | None = None) -> dict:
    """Per-frame counts: {"species": [names], "rows": [(video, frame, time_s, [count per species])]}.

    Every counted frame has a row, including frames where nothing was found.
    """
    counted, params = _counted_cte(project, source, video)
    names = {s["id"]: s["name"] for s in project.species()}
    found: dict[tuple[str, int], dict[int, int]] = {}
    for vid, frame, sid, n in project.conn.execute(counted, params):
        found.setdefault((vid, frame), {})[sid] = n
    species_ids = _species_ids(project, source)
    frames_sql, frame_params = _counted_frames(project, source, video)
    frames = project.conn.execute(f"{frames_sql} ORDER BY video_id, frame_index", frame_params)
    fps = {v["id"]: v["fps"] for v in project.videos()}
    rows = []
    for vid, frame in frames:
        counts = found.get((vid, frame), {})
        seconds = round(frame / fps[vid], 3) if fps.get(vid) else None
        rows.append((vid, frame, seconds, [counts.get(s, 0) for s in species_ids]))
    return {"species": [names[s] for s in species_ids], "rows": rows}


def _write_csv(path: str | os.PathLike, header: list[str], rows: Iterable[list]) -> Path:
    """Write through a temporary file: a failed or killed export never leaves half a CSV."""
    path = Path(path)
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    temporary.replace(path)
    return path


def write_summary_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)

    return _write_csv(path, SUMMARY_COLUMNS, ([fmt(r[c]) for c in SUMMARY_COLUMNS] for r in rows))


def write_frame_csv(table: dict, path: str | os.PathLike) -> Path:
    header = ["video", "frame", "time_s", *table["species"]]
    return _write_csv(path, header, ([v, f, "" if t is None else t, *c] for v, f, t, c in table["rows"]))
