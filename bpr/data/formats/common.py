"""What every importer produces (an ImportBatch), how boxes are checked, the one writer to the store, and
what a format declares (Format) so that the command and the app offer it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpr.config import option
from bpr.data.store import Project, source_counts
from bpr.progress import Progress


SAME_BOX_PX = 0.5  # an imported box this close to one of the frame's boxes (every side) is that box
PLACES_SHOWN = 3   # a left-out message names this many places (lines, ids), then the total


class LabelFormatError(ValueError):
    """An annotation file cannot be imported. The message names the file and the line or element."""


@dataclass
class VideoRecord:
    id: str
    kind: str = "video"                  # 'video', or 'image' for a single-frame still
    path: Path | None = None             # the file, when the importer found it
    frame_count: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    split: str | None = None             # None keeps what the store already has
    source: str | None = None


@dataclass
class BoxRecord:
    video_id: str
    frame_index: int
    species: str
    x1: float
    y1: float
    x2: float
    y2: float
    origin_key: str                      # stable per box in its source, e.g. "cvat:track 12"
    track_id: int | None = None


@dataclass
class LeftOut:
    """Things of one kind that an import leaves out (boxes with no area, crowd regions, empty files), and
    where each was: what the reference tools read but cannot be imported as boxes."""

    kind: tuple[str, str]                                       # the noun: one, several
    places: list[tuple[str, str]] = field(default_factory=list)  # (file, "line 12" / "annotation id 7" / ...)

    def message(self) -> str:
        """One line: how many, and where the first few were."""
        n, files = len(self.places), list(dict.fromkeys(file for file, _ in self.places))
        noun = self.kind[0] if n == 1 else self.kind[1]
        if len(files) == 1:
            head, shown = f"{files[0]}: {n} {noun} left out", [place for _, place in self.places]
        else:
            head, shown = f"{n} {noun} left out, in {len(files)} files", [f"{f} {p}" for f, p in self.places]
        more = f", … {n} in all" if n > PLACES_SHOWN else ""
        return f"{head} ({', '.join(shown[:PLACES_SHOWN])}{more})"


@dataclass
class ImportBatch:
    """Everything one import adds, checked before anything is written."""

    videos: list[VideoRecord] = field(default_factory=list)
    species: dict[str, str | None] = field(default_factory=dict)   # name -> colour (or None)
    frames: list[tuple[str, int, str]] = field(default_factory=list)  # video id, frame, status
    boxes: list[BoxRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)   # videos whose labels these boxes replace

    def leave_out(self, kind: tuple[str, str], file: str | Path, place: str) -> None:
        """Count one thing of ``kind`` (its noun: one, several) left out of ``file`` at ``place``."""
        entry = next((e for e in self.left_out if e.kind == kind), None)
        if entry is None:
            entry = LeftOut(kind)
            self.left_out.append(entry)
        entry.places.append((str(file), place))

    def refuse_left_out(self) -> None:
        """Raise for the first thing left out: a strict import refuses a source rather than leave
        anything of it out."""
        if self.left_out:
            first = self.left_out[0]
            file, place = first.places[0]
            raise LabelFormatError(f"{file}: {place}: {first.kind[0]}; a strict import refuses the source "
                                   f"(without --strict, it would leave out {first.message()})")


@dataclass
class ImportReport:
    videos: int = 0  # images included: an image dataset is stored as one-frame videos
    videos_new: int = 0
    images: int = 0
    boxes_added: int = 0
    boxes_already_there: int = 0       # replacing: the boxes the file has unchanged, kept as they were
    boxes_removed: int | None = None   # None: the import added to the labels, replacing none
    frames: int = 0
    species_new: list[str] = field(default_factory=list)
    missing_videos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # LeftOut messages

    def lines(self) -> list[str]:
        sources = ", ".join(f"{noun}: {n}" for noun, n in source_counts(self.videos, self.images))
        boxes = f"boxes: {self.boxes_added} added, {self.boxes_already_there} already in the project"
        if self.boxes_removed is not None:
            boxes = (f"boxes: {self.boxes_removed} removed, {self.boxes_added} added, {self.boxes_already_there} "
                     "unchanged: the file's boxes are now the labels there")
        out = [
            f"{sources} ({self.videos_new} new, {len(self.missing_videos)} without a file)",
            boxes,
            f"labeled frames: {self.frames}",
        ]
        if self.species_new:
            out.append(f"new species: {', '.join(self.species_new)}")
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"left out: {line}" for line in self.left_out]
        return out


class BoxChecker:
    """Leaves out boxes with no area, and clips boxes that leave the frame, counting both.

    A box with x2 <= x1 or y2 <= y1 (zero width or height, or corners the wrong way round) is left
    out: public datasets hold a few (ultralytics drops zero-area boxes when it trains; DIVE's test data
    has rows with y2 < y1) and none of the reference tools puts inverted corners in order, so neither
    does this. Boxes reaching outside the frame are common (annotators drag past the edge): they are
    clipped, and a box wholly outside it is left out.
    """

    NO_AREA = ("box with no area (x2 <= x1 or y2 <= y1)", "boxes with no area (x2 <= x1 or y2 <= y1)")
    OUTSIDE = ("box wholly outside the frame", "boxes wholly outside the frame")

    def __init__(self, file: Path | str):
        self.file = str(file)
        self.clipped = 0
        self.left_out: dict[tuple[str, str], list[str]] = {self.NO_AREA: [], self.OUTSIDE: []}

    def check(self, where: str, x1: float, y1: float, x2: float, y2: float,
              width: int | None, height: int | None) -> tuple[float, float, float, float] | None:
        """The box, clipped to the frame; None for a box left out."""
        values = (x1, y1, x2, y2)
        if any(v != v or v in (float("inf"), float("-inf")) for v in values):
            raise LabelFormatError(f"{self.file}: {where}: box coordinates are not finite: {values}")
        if x2 <= x1 or y2 <= y1:
            self.left_out[self.NO_AREA].append(where)
            return None
        if width and height:
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if (cx1, cy1, cx2, cy2) != values:
                if cx2 <= cx1 or cy2 <= cy1:
                    self.left_out[self.OUTSIDE].append(where)
                    return None
                self.clipped += 1
                return cx1, cy1, cx2, cy2
        return values

    def warnings(self) -> list[str]:
        if not self.clipped:
            return []
        return [f"{self.file}: {self.clipped} box(es) reached outside the frame and were clipped to it"]

    def report_to(self, batch: ImportBatch) -> None:
        """Add what this file's boxes left out, and the clip warning, to ``batch``."""
        batch.warnings += self.warnings()
        for kind, places in self.left_out.items():
            for place in places:
                batch.leave_out(kind, self.file, place)


def write_batch(project: Project, batch: ImportBatch, progress: Progress | None = None,
                probe: Callable[[Path], dict] | None = None,
                logged_as: tuple[str, str] | None = None) -> ImportReport:
    """Write a checked batch in one transaction; re-importing the same batch adds nothing.

    ``logged_as`` (format, source) records the import, and what it left out, in the project's log
    of imports (``bpr info`` lists what imports left out).

    Existing boxes are never overwritten: a box already imported (same video, frame and origin key)
    is kept as it is in the store, so re-importing does not undo edits made since. A box the frame
    already has (same species, each side within ``SAME_BOX_PX``) is not added again either, whatever
    its source: labels exported to VIAME or COCO, completed elsewhere and imported back, add only
    the boxes that are new.

    The batch is the whole set of labels of the videos in ``batch.replace``: their boxes it lacks are
    removed, in the same transaction, so boxes moved or deleted in another tool are moved or deleted
    here too. Their boxes it has (the same box, as above) are kept as they are, with their id, source
    and times.
    """
    report = ImportReport(warnings=list(batch.warnings), left_out=[e.message() for e in batch.left_out])
    if probe is None:
        from bpr.data.media import probe_status as probe
    # Probe files before the transaction: reading video headers can be slow, and must not hold the lock.
    file_info = {v.id: probe(v.path) for v in batch.videos if v.path is not None and v.kind == "video"}

    with project.transaction() as conn:
        known = {r[0] for r in conn.execute("SELECT id FROM videos")}
        known_species = {r[0].lower() for r in conn.execute("SELECT name FROM species")}
        for name, color in batch.species.items():
            if name.lower() not in known_species:
                report.species_new.append(name)
                known_species.add(name.lower())
            project.species_id(name, color)

        for v in batch.videos:
            report.videos += 1
            report.images += v.kind == "image"
            if v.id not in known:
                report.videos_new += 1
                conn.execute("INSERT INTO videos (id, kind, split, source) VALUES (?, ?, 'none', ?)",
                             (v.id, v.kind, v.source))
                known.add(v.id)
            conn.execute(
                """UPDATE videos SET split = coalesce(?, split), source = coalesce(?, source),
                       frame_count = coalesce(?, frame_count), fps = coalesce(?, fps),
                       width = coalesce(?, width), height = coalesce(?, height) WHERE id = ?""",
                (v.split, v.source, v.frame_count, v.fps, v.width, v.height, v.id))
            if v.path is not None:
                if v.kind == "image":  # the importer read its size already; decoding it is slow
                    exists = Path(v.path).is_file()
                    info, status = {}, "ok" if exists else "missing"
                    reason = None if exists else f"{v.path}: no such file"
                else:
                    info, status, reason = file_info[v.id]
                project.set_video_file(v.id, v.path, info, status, reason)
                if status == "unreadable":  # missing files are counted in missing_videos instead
                    report.warnings.append(f"video {v.id}: {reason}")
            if conn.execute("SELECT status FROM videos WHERE id = ?", (v.id,)).fetchone()[0] == "missing":
                report.missing_videos.append(v.id)

        if batch.frames:
            conn.executemany(
                "INSERT INTO frames (video_id, frame_index, label_status) VALUES (?, ?, ?) "
                "ON CONFLICT (video_id, frame_index) DO UPDATE SET label_status = excluded.label_status",
                batch.frames)
            report.frames = len(batch.frames)

        species_ids = {name.lower(): i for i, name in conn.execute("SELECT id, name FROM species")}
        boxes = batch.boxes
        if batch.replace:
            boxes, report.boxes_already_there, report.boxes_removed = _replace_labels(
                conn, batch.replace, boxes, species_ids)
        # Only videos that had boxes before need the "same box" check, against those boxes only.
        had_boxes = {r[0] for r in conn.execute("SELECT DISTINCT video_id FROM boxes")} - set(batch.replace)
        last_before = conn.execute("SELECT coalesce(max(id), 0) FROM boxes").fetchone()[0]
        now = time.time()
        before = conn.total_changes
        chunk = 20000
        for start in range(0, len(boxes), chunk):
            rows = [
                (b.video_id, b.frame_index, species_ids[b.species.lower()], b.x1, b.y1, b.x2, b.y2,
                 b.track_id, b.origin_key, now)
                for b in boxes[start:start + chunk]
            ]
            conn.executemany(
                "INSERT INTO boxes (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, "
                "source, origin_key, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'imported', ?, ?) "
                "ON CONFLICT DO NOTHING", [r for r in rows if r[0] not in had_boxes])
            conn.executemany(
                "INSERT INTO boxes (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, "
                "source, origin_key, created) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'imported', ?9, ?10 "
                "WHERE NOT EXISTS (SELECT 1 FROM boxes e INDEXED BY boxes_frame WHERE e.video_id = ?1 "
                "AND e.frame_index = ?2 AND e.id <= ?11 AND e.species_id = ?3 "
                f"AND abs(e.x1 - ?4) <= {SAME_BOX_PX} AND abs(e.y1 - ?5) <= {SAME_BOX_PX} "
                f"AND abs(e.x2 - ?6) <= {SAME_BOX_PX} AND abs(e.y2 - ?7) <= {SAME_BOX_PX}) "
                "ON CONFLICT DO NOTHING", [(*r, last_before) for r in rows if r[0] in had_boxes])
            if progress:
                progress(min(start + chunk, len(boxes)), len(boxes), "writing boxes")
        report.boxes_added = conn.total_changes - before
        if not batch.replace:
            report.boxes_already_there = len(boxes) - report.boxes_added
        if logged_as is not None:
            conn.execute("INSERT INTO imports (time, format, source, boxes_added, left_out) VALUES (?, ?, ?, ?, ?)",
                         (now, *logged_as, report.boxes_added, json.dumps(report.left_out)))
    return report


def _replace_labels(conn, videos: list[str], boxes: list[BoxRecord],
                    species_ids: dict[str, int]) -> tuple[list[BoxRecord], int, int]:
    """Make ``boxes`` the labels of ``videos``: each box of theirs that one of ``boxes`` matches (same frame
    and species, each side within SAME_BOX_PX; one to one, so a box repeated in the file is added again)
    stays as it is, taking that box's origin key and track; the others are deleted.

    Returns the boxes still to write (those matching none, and any of other videos), how many were
    kept, and how many were deleted.
    """
    existing: dict[tuple, list[tuple]] = {}
    # One query a video: an image folder's images may outnumber SQLite's 32766 variables.
    for video in sorted(set(videos)):
        for row in conn.execute("SELECT id, video_id, frame_index, species_id, x1, y1, x2, y2 FROM boxes "
                                "WHERE video_id = ? ORDER BY id", (video,)):
            existing.setdefault(row[1:4], []).append(row)
    kept: list[tuple[int, BoxRecord]] = []
    rest = []
    for b in boxes:
        candidates = existing.get((b.video_id, b.frame_index, species_ids[b.species.lower()]), [])
        match = next((row for row in candidates if all(
            abs(here - there) <= SAME_BOX_PX for here, there in zip(row[4:], (b.x1, b.y1, b.x2, b.y2)))), None)
        if match is None:
            rest.append(b)
        else:
            candidates.remove(match)
            kept.append((match[0], b))
    gone = [(row[0],) for rows in existing.values() for row in rows]
    conn.executemany("DELETE FROM boxes WHERE id = ?", gone)
    # Origin keys are unique in a frame, and kept boxes may trade them: clear them all, then set them.
    conn.executemany("UPDATE boxes SET origin_key = NULL WHERE id = ?", [(i,) for i, _ in kept])
    conn.executemany("UPDATE OR IGNORE boxes SET origin_key = ?, track_id = ? WHERE id = ?",  # a key the file
                     [(b.origin_key, b.track_id, i) for i, b in kept])                 # repeats stays off
    return rest, len(kept), len(gone)


def normalise_species(name: str) -> str:
    """Collapse whitespace; species match case-insensitively (DUSIA capitalises inconsistently)."""
    return " ".join(name.split())


@dataclass(frozen=True)
class Ask:
    """A question the app asks a user before an import, to fill one of its options. Plain data: the app
    shows it as a dialog; the command takes the option as a flag instead."""

    option: str                   # the import option it fills
    prompt: str
    kind: str = "folder"          # "folder": a folder dialog, where cancel leaves the option unset;
                                  # "choice": one button per choice, where cancel cancels the import
    choices: tuple[tuple[str, Any], ...] = ()   # (button text, the option's value)
    detail: str = ""              # what the choices mean
    when: Callable[[Path], bool] | None = None  # asked only when this is true of the source
    start_beside_source: bool = False           # the folder dialog opens in the source's folder


@dataclass(frozen=True)
class Format:
    """One file format: how an import reads it and what the import takes, how an export writes it.

    ``read(source, options, project, progress)`` reads and checks a whole source into an ImportBatch;
    ``project`` is the project imported into (None for a new one), which some formats consult (an
    existing video's frame size) and none writes. ``write(project, out, options, progress, cancel)``
    writes the project out and returns lines saying what it wrote. The options are a settings
    dataclass (bpr.config): the command makes its flags from them, the app fills them.
    """

    name: str                      # the command's word: `bpr import NAME`, `bpr export NAME`
    title: str                     # what the app's menus call it
    source: str = ""               # the command's name for what an import reads ("xml")
    source_help: str = ""
    source_is_folder: bool = False
    file_filter: str = ""          # the app's file dialog filter for the source, e.g. "CVAT XML (*.xml)"
    read: Callable[..., ImportBatch] | None = None
    import_options: type | None = None
    asks: tuple[Ask, ...] = ()
    write: Callable[..., list[str]] | None = None
    export_options: type | None = None
    export_option_names: tuple[str, ...] | None = None   # the export's options, where not all of the class's
    export_title: str = ""         # what the app's Export menu calls it
    export_help: str = ""
    export_to_folder: bool = False
    export_file: str = ""          # an export's default file name, e.g. "labels.json"
    export_filter: str = ""


@dataclass
class DetectionsExport:
    """What an export of the labels, or of a run's detections, takes."""

    run: str | None = option(None, group="export", label="Run",
                             help="export this run's detections instead of the labels")
    min_conf: float = option(0.0, group="export", label="Confidence", low=0.0, high=1.0,
                             help="detections at or above this")
