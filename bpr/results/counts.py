"""Species counts from detections or labels: per-frame counts, MaxN, mean count, frames present, CSV.

MaxN (the largest number of a species seen in one frame of a video) is the standard conservative
abundance measure of underwater video ecology: it never counts one animal twice. Mean count is over
*every* frame that was looked at (frames where nothing was found count as 0), so detection runs record
which frames they processed; label counts use the labeled frames.

A folder of images is counted as one image sequence, the way DIVE opens it: MaxN over its images, at
the image where it is first reached (its frame number in the folder, and its id). Per-frame tables keep
one row per image.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bpr.config import option
from bpr.data.store import ImageSequence, Project

SUMMARY_COLUMNS = ["video", "species", "maxn", "maxn_frame", "maxn_time_s", "maxn_timecode", "maxn_image",
                   "mean_count", "frames_present", "frames_counted", "threshold", "detection_floor",
                   "below_floor", "run"]
DEFAULT_CONF = 0.25  # counts of a run with no thresholds chosen on val (weights trained elsewhere)


@dataclass
class CountSource:
    """Where counts come from: a detection run at confidence thresholds, or the labels."""

    run: str | None = None                     # None: count labeled boxes
    conf: float = option(DEFAULT_CONF, group="counting", label="Confidence", low=0.0, high=1.0, step=0.01,
                         help="detections at or above this confidence count (default: the run's thresholds, "
                              "chosen per species on its val frames)")
    species_conf: dict[str, float] = field(default_factory=dict)  # per-species overrides
    label_statuses: tuple[str, ...] = ("partial", "full")          # which labeled frames (labels only)

    @classmethod
    def for_run(cls, project: Project, run: str, conf: float | None = None,
                species_conf: dict[str, float] | None = None) -> CountSource:
        """Counts of a run's detections at the thresholds chosen on its val frames
        (bpr.results.evaluate.choose_thresholds); ``conf`` overrides them all, ``species_conf`` some."""
        stored = (project.run(run).summary or {}).get("thresholds")
        if conf is None and stored:
            return cls(run=run, conf=stored["overall"], species_conf={**stored["species"], **(species_conf or {})})
        return cls(run=run, conf=DEFAULT_CONF if conf is None else conf, species_conf=dict(species_conf or {}))

    def threshold_for(self, species: str) -> float | None:
        if self.run is None:
            return None
        by_lower = {k.lower(): v for k, v in self.species_conf.items()}
        return by_lower.get(species.lower(), self.conf)


def _run_id(project: Project, source: CountSource) -> int:
    return project.run_id(source.run)


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


def _video_filter(ids: list[str] | None, table: str = "") -> tuple[str, list]:
    """SQL restricting ``video_id`` to ``ids`` (None: no restriction), and its params. A list goes in as
    one JSON parameter: an image folder can hold more images than SQLite takes parameters."""
    column = f"{table}.video_id" if table else "video_id"
    if ids is None:
        return "", []
    if len(ids) == 1:
        return f"AND {column} = ?", list(ids)
    return f"AND {column} IN (SELECT value FROM json_each(?))", [json.dumps(list(ids))]


def _counted_cte(project: Project, source: CountSource, ids: list[str] | None) -> tuple[str, list]:
    """SQL for a CTE ``counted(video_id, frame_index, species_id, n)`` with n >= 1, and its params."""
    if source.run is None:
        where, video_params = _video_filter(ids, "b")
        statuses = ",".join("?" * len(source.label_statuses))
        sql = (f"SELECT b.video_id, b.frame_index, b.species_id, count(*) AS n FROM boxes b "
               f"JOIN frames f USING (video_id, frame_index) WHERE f.label_status IN ({statuses}) "
               f"{where} GROUP BY b.video_id, b.frame_index, b.species_id")
        return sql, [*source.label_statuses, *video_params]
    where, video_params = _video_filter(ids, "d")
    threshold, params = _threshold_sql(project, source)
    sql = (f"SELECT d.video_id, d.frame_index, d.species_id, count(*) AS n FROM detections d "
           f"WHERE d.run_id = ? AND d.confidence >= {threshold} {where} "
           f"GROUP BY d.video_id, d.frame_index, d.species_id")
    return sql, [_run_id(project, source), *params, *video_params]


def _counted_frames(project: Project, source: CountSource, ids: list[str] | None) -> tuple[str, list]:
    """SQL selecting (video_id, frame_index) of every frame counts are over, and its params: the
    labeled frames of the chosen statuses, or the frames the detection run processed."""
    video_filter, video_params = _video_filter(ids)
    if source.run is None:
        statuses = ",".join("?" * len(source.label_statuses))
        return (f"SELECT video_id, frame_index FROM frames WHERE label_status IN ({statuses}) {video_filter}",
                [*source.label_statuses, *video_params])
    return (f"SELECT video_id, frame_index FROM detected_frames WHERE run_id = ? {video_filter}",
            [_run_id(project, source), *video_params])


def _frames_counted(project: Project, source: CountSource, ids: list[str] | None) -> dict[str, int]:
    frames, params = _counted_frames(project, source, ids)
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
                                    (run.id,))
    names = {s["id"]: s["name"] for s in project.species()}
    ids = {r[0] for r in rows}
    if source.run is not None:  # the classes detection recorded: species looked for, found or not
        by_name = {name.lower(): i for i, name in names.items()}
        ids |= {by_name[c.lower()] for c in (run.summary or {}).get("classes", []) if c.lower() in by_name}
    return sorted(ids, key=lambda i: names[i].lower())


def timecode(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = round(seconds * 1000)  # rounded before splitting: 59.9996 s is 00:01:00.000, not 00:00:60.000
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _scope(project: Project, video: str | ImageSequence | None) -> tuple[list[str] | None, list[ImageSequence]]:
    """The video ids counts are over (None: all) and the image sequences among them."""
    if video is None:
        return None, project.image_sequences()
    ids, sequence = project.resolve_scope(video)
    return ids, [sequence] if sequence else []


def video_summary(project: Project, source: CountSource, video: str | ImageSequence | None = None) -> list[dict]:
    """One row per (video, species): MaxN with its first frame and time, mean count, frames present.

    ``video`` (None: all) is a video's id, an image folder's name or ImageSequence, or an image's id
    (its folder).
    Every species of the source (see _species_ids) gets a row in every counted video or image folder
    (MaxN 0 where absent).
    """
    ids, sequences = _scope(project, video)
    counted, params = _counted_cte(project, source, ids)
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
    frames_counted = _frames_counted(project, source, ids)
    names = {s["id"]: s["name"] for s in project.species()}
    species_ids = _species_ids(project, source)
    # the confidence detection kept boxes from, per video (a threshold below it counts what was kept)
    floors = (project.run(source.run).summary or {}).get("detection_floor", {}) if source.run else {}

    def row(unit: str, sid: int, n: int, frame: int | None, seconds: float | None, image: str | None,
            total: int, present: int, counted_frames: int, floor: float | None) -> dict:
        threshold = source.threshold_for(names[sid])
        return {
            "video": unit, "species": names[sid], "maxn": n, "maxn_frame": frame,
            "maxn_time_s": None if seconds is None else round(seconds, 3),
            "maxn_timecode": timecode(seconds), "maxn_image": image,
            "mean_count": total / counted_frames if counted_frames else 0.0,
            "frames_present": present, "frames_counted": counted_frames,
            "threshold": threshold, "detection_floor": floor,
            "below_floor": None if floor is None or threshold is None else threshold < floor,
            "run": source.run or "labels",
        }

    rows = []
    in_sequences = {image["id"] for sequence in sequences for image in sequence.images}
    fps = {v["id"]: v["fps"] for v in project.videos()}
    for vid in sorted(set(frames_counted) - in_sequences):
        for sid in species_ids:
            n, frame, total, present = found.get((vid, sid), (0, None, 0, 0))
            seconds = frame / fps[vid] if frame is not None and fps.get(vid) else None
            rows.append(row(vid, sid, n, frame, seconds, None, total, present, frames_counted[vid],
                            floors.get(vid)))
    for sequence in sequences:
        images = [image["id"] for image in sequence.images if image["id"] in frames_counted]  # frame order
        if not images:
            continue
        for sid in species_ids:
            per_image = [(found.get((vid, sid), (0,))[0], vid) for vid in images]
            n = max(count for count, _ in per_image)
            first = next(vid for count, vid in per_image if count == n) if n else None
            rows.append(row(sequence.name, sid, n, None if first is None else sequence.frames[first], None,
                            first, sum(count for count, _ in per_image),
                            sum(1 for count, _ in per_image if count), len(images),
                            max((floors[i] for i in images if i in floors), default=None)))
    rows.sort(key=lambda r: r["video"])  # stable: species stay in order within each
    return rows


def frame_counts(project: Project, source: CountSource, video: str | ImageSequence | None = None) -> dict:
    """Per-frame counts: {"species": [names], "rows": [(video, frame, time_s, [count per species])],
    "run": the run counted or "labels", "thresholds": [threshold per species, None for labels]}.

    Every counted frame has a row, including frames where nothing was found; an image's row is its own
    (its id, frame 0). ``video`` is as for video_summary.
    """
    ids, _ = _scope(project, video)
    counted, params = _counted_cte(project, source, ids)
    names = {s["id"]: s["name"] for s in project.species()}
    found: dict[tuple[str, int], dict[int, int]] = {}
    for vid, frame, sid, n in project.conn.execute(counted, params):
        found.setdefault((vid, frame), {})[sid] = n
    species_ids = _species_ids(project, source)
    frames_sql, frame_params = _counted_frames(project, source, ids)
    frames = project.conn.execute(f"{frames_sql} ORDER BY video_id, frame_index", frame_params)
    fps = {v["id"]: v["fps"] for v in project.videos()}
    rows = []
    for vid, frame in frames:
        counts = found.get((vid, frame), {})
        seconds = round(frame / fps[vid], 3) if fps.get(vid) else None
        rows.append((vid, frame, seconds, [counts.get(s, 0) for s in species_ids]))
    species = [names[s] for s in species_ids]
    return {"species": species, "rows": rows, "run": source.run or "labels",
            "thresholds": [source.threshold_for(name) for name in species]}


def shown_per_frame(project: Project, video_ids: list[str], run: str | None, conf: float,
                    frame: int | None = None) -> dict[tuple[str, int], dict[str, int]]:
    """What the frame view shows, counted per frame and species: on the frames ``run`` has processed, its
    detections at ``conf`` or above; on every other frame (all of them with no run), the labels, labeled
    frame or not. Of one ``frame`` only, if given. {(video, frame): {species: count}}; frames with nothing
    are left out. The timeline draws these, and the Review panel lists the current frame's."""
    where, params = _video_filter(list(video_ids), "t")
    if frame is not None:
        where, params = where + " AND t.frame_index = ?", [*params, frame]
    run_id = None if run is None else project.run_id(run)
    unprocessed = "" if run_id is None else (
        "AND NOT EXISTS (SELECT 1 FROM detected_frames p WHERE p.run_id = ? "
        "AND p.video_id = t.video_id AND p.frame_index = t.frame_index)")
    sql = (f"SELECT t.video_id, t.frame_index, s.name, count(*) FROM boxes t JOIN species s ON s.id = t.species_id "
           f"WHERE 1 {where} {unprocessed} GROUP BY t.video_id, t.frame_index, t.species_id")
    all_params = params
    if run_id is not None:
        sql = (f"SELECT t.video_id, t.frame_index, s.name, count(*) FROM detections t "
               f"JOIN species s ON s.id = t.species_id WHERE t.run_id = ? AND t.confidence >= ? {where} "
               f"GROUP BY t.video_id, t.frame_index, t.species_id UNION ALL {sql}")
        all_params = [run_id, conf, *params, *params, run_id]
    out: dict[tuple[str, int], dict[str, int]] = {}
    for vid, index, species, n in project.conn.execute(sql, all_params):
        out.setdefault((vid, index), {})[species] = n
    return out


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
    def fmt(column, v):
        if v is None:
            return ""
        # Only the mean is shortened: a time keeps its milliseconds in a dive of hours (12333.367 s)
        return f"{v:.6g}" if column == "mean_count" else v

    return _write_csv(path, SUMMARY_COLUMNS, ([fmt(c, r[c]) for c in SUMMARY_COLUMNS] for r in rows))


def write_frame_csv(table: dict, path: str | os.PathLike) -> Path:
    """One row a frame, a column a species; the last two say how it was counted, as the summary's do:
    ``run`` (or "labels") and ``threshold``, one number, or each species' where they differ
    ("sea star 0.25; urchin 0.31")."""
    header = ["video", "frame", "time_s", *table["species"], "run", "threshold"]
    thresholds = dict(zip(table["species"], table["thresholds"]))
    if len(set(thresholds.values())) <= 1:
        threshold = next(iter(thresholds.values()), None)
        threshold = "" if threshold is None else threshold
    else:
        threshold = "; ".join(f"{name} {t}" for name, t in thresholds.items())
    return _write_csv(path, header, ([v, f, "" if t is None else t, *c, table["run"], threshold]
                                     for v, f, t, c in table["rows"]))
