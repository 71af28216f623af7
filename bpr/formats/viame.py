"""VIAME CSV, the format VIAME and DIVE read and write: one CSV per video, one row per box.

Columns: 1 track id, 2 video or image identifier, 3 frame, 4-7 box (TL_x, TL_y, BR_x, BR_y), 8 confidence,
9 target length (-1: none), then (species, confidence) pairs. Lines starting with '#' are the header and
metadata (DIVE writes ``# metadata,fps: 30,...``).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from bpr.formats.common import BoxChecker, BoxRecord, ImportBatch, LabelFormatError, VideoRecord, normalise_species
from bpr.store import Project

HEADER = ("# 1: Detection or Track-id,2: Video or Image Identifier,3: Unique Frame Identifier,"
          "4-7: Img-bbox(TL_x,TL_y,BR_x,BR_y),8: Detection or Length Confidence,"
          "9: Target Length (0 or -1 if invalid),10-11+: Repeated Species,Confidence Pairs or Attributes")


def _identifier(project: Project, video: dict, frame: int) -> str:
    """Column 2: the image's file name for stills, the video's file name for videos."""
    if video["path"]:
        return Path(video["path"]).name
    return f"{video['id']}.mp4" if video["kind"] == "video" else video["id"]


def export_viame(project: Project, out_dir: str | os.PathLike, run: str | None = None,
                 min_conf: float = 0.0, videos: list[str] | None = None) -> list[Path]:
    """Write one VIAME CSV per video: labels (run None) or a run's detections at >= min_conf.

    Label rows keep their track ids (a new id for boxes without one) and confidence 1.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in project.videos() if videos is None or v["id"] in videos]
    written = []
    run_id = project.run(run)["id"] if run else None
    for video in chosen:
        if run_id is None:
            rows = project.conn.execute(
                "SELECT b.track_id, b.frame_index, b.x1, b.y1, b.x2, b.y2, 1.0, s.name FROM boxes b "
                "JOIN species s ON s.id = b.species_id WHERE b.video_id = ? ORDER BY b.frame_index, b.id",
                (video["id"],)).fetchall()
        else:
            rows = project.conn.execute(
                "SELECT NULL, d.frame_index, d.x1, d.y1, d.x2, d.y2, d.confidence, s.name FROM detections d "
                "JOIN species s ON s.id = d.species_id WHERE d.run_id = ? AND d.video_id = ? "
                "AND d.confidence >= ? ORDER BY d.frame_index, d.id", (run_id, video["id"], min_conf)).fetchall()
        if not rows:
            continue
        used = {r[0] for r in rows if r[0] is not None}
        next_id = max(used, default=-1) + 1
        path = out_dir / (re.sub(r"[^\w.-]", "_", video["id"]) + ".csv")
        temporary = path.with_name(path.name + ".part")
        with open(temporary, "w", newline="", encoding="utf-8") as f:
            f.write(HEADER + "\n")
            f.write(f'# metadata,fps: {video["fps"] or 1:g},"exported_by: ""bpr"""\n')
            writer = csv.writer(f)
            for track, frame, x1, y1, x2, y2, conf, species in rows:
                if track is None:
                    track, next_id = next_id, next_id + 1
                writer.writerow([track, _identifier(project, video, frame), frame, f"{x1:.3f}", f"{y1:.3f}",
                                 f"{x2:.3f}", f"{y2:.3f}", f"{conf:.6g}", -1, species, f"{conf:.6g}"])
        temporary.replace(path)
        written.append(path)
    return written


def read_viame(path: str | os.PathLike, video_id: str | None = None, split: str | None = None,
               status: str = "none", width: int | None = None, height: int | None = None) -> ImportBatch:
    """One VIAME CSV as an ImportBatch for one video (``video_id``, else the CSV's file stem).

    Each row's species is its highest-confidence pair. Frames holding boxes get label ``status``
    ('none' by default: a CSV does not say whether every animal was boxed).
    """
    path = Path(path)
    vid = video_id or path.stem
    checker = BoxChecker(path)
    batch = ImportBatch()
    fps = None
    frames = set()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{path}: not a text CSV file") from None
    except OSError as e:
        raise LabelFormatError(f"{path}: cannot be read ({e.strerror})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            match = re.search(r"fps:\s*([0-9.]+)", line)
            if match:
                fps = float(match.group(1))
            continue
        try:
            columns = next(csv.reader([line]))
        except csv.Error as e:
            raise LabelFormatError(f"{path}:{number}: malformed CSV ({e})") from None
        if len(columns) < 9:
            raise LabelFormatError(f"{path}:{number}: expected at least 9 columns (track, image, frame, "
                                   f"4 box values, confidence, length), found {len(columns)}")
        try:
            track, frame = int(columns[0]), int(columns[2])
            x1, y1, x2, y2, _conf = (float(c) for c in columns[3:8])
        except ValueError:
            raise LabelFormatError(f"{path}:{number}: track, frame and box must be numbers") from None
        pairs = [c for c in columns[9:] if not c.startswith("(")]  # "(kp) ..." etc. are attributes
        if len(pairs) < 2 or len(pairs) % 2:
            raise LabelFormatError(f"{path}:{number}: expected species,confidence pairs after column 9")
        try:
            ranked = sorted(((float(pairs[i + 1]), pairs[i]) for i in range(0, len(pairs), 2)), reverse=True)
        except ValueError:
            raise LabelFormatError(f"{path}:{number}: a species confidence is not a number") from None
        species = normalise_species(ranked[0][1])
        if not species:
            raise LabelFormatError(f"{path}:{number}: empty species name")
        if frame < 0:
            raise LabelFormatError(f"{path}:{number}: frame must not be negative")
        x1, y1, x2, y2 = checker.check(f"line {number}", x1, y1, x2, y2, width, height)
        batch.species.setdefault(species, None)
        batch.boxes.append(BoxRecord(vid, frame, species, x1, y1, x2, y2, origin_key=f"viame:{track}",
                                     track_id=track))
        frames.add(frame)
    batch.videos.append(VideoRecord(vid, fps=fps, split=split, source=path.name, width=width, height=height))
    if status != "none":
        batch.frames = [(vid, f, status) for f in sorted(frames)]
    batch.warnings += checker.warnings()
    return batch
