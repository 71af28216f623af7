"""CVAT "for video 1.1" XML: tracks of per-frame boxes, as DUSIA (and CVAT's video export) stores them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from bpr.config import option
from bpr.data.formats.common import (
    BoxChecker,
    BoxRecord,
    Format,
    ImportBatch,
    LabelFormatError,
    VideoRecord,
    normalise_species,
)
from bpr.data.store import LABEL_STATUSES, SPLITS


@dataclass
class CvatVideo:
    """One parsed CVAT video task."""

    file: Path
    name: str                              # the task name (DUSIA: the 20-digit video id)
    source: str | None                     # the video file name CVAT recorded, if any
    frame_count: int | None
    width: int | None
    height: int | None
    labels: dict[str, str | None]          # label name -> colour
    boxes: list[BoxRecord] = field(default_factory=list)   # video_id filled in by the caller
    keyframes: set[int] = field(default_factory=set)        # frames holding a keyframe box
    warnings: list[str] = field(default_factory=list)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def parse_cvat_video(path: str | Path, video_id: str = "") -> CvatVideo:
    """Parse a CVAT for video 1.1 file. Boxes with ``outside="1"`` are not objects and are skipped.

    Every other box becomes a BoxRecord (interpolated ones included, with their track id); its origin
    key is ``cvat:<track id>``, unique per frame since a track has one box per frame.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, column = e.position
        raise LabelFormatError(f"{path}: line {line}, column {column}: malformed XML ({e})") from None
    except OSError as e:
        raise LabelFormatError(f"{path}: cannot be read ({e.strerror})") from None
    if root.tag != "annotations":
        raise LabelFormatError(f"{path}: not a CVAT annotation file (root element <{root.tag}>, "
                               "expected <annotations>)")
    if root.find("image") is not None and root.find("track") is None:
        raise LabelFormatError(f"{path}: this is CVAT *for images* XML; export the task as "
                               "'CVAT for video 1.1' to keep frame numbers and tracks")
    task = root.find("meta/task")
    if task is None:
        task = root.find("meta/job")  # CVAT exports a job with the same layout
    if task is None:
        raise LabelFormatError(f"{path}: no <meta><task> element: not a CVAT for video 1.1 file")

    labels: dict[str, str | None] = {}
    for label in task.iterfind("labels/label"):
        name = normalise_species(label.findtext("name") or "")
        if name:
            labels[name] = label.findtext("color") or None
    lookup = {name.lower(): name for name in labels}

    video = CvatVideo(
        file=path,
        name=(task.findtext("name") or "").strip(),
        source=(root.findtext("meta/source") or "").strip() or None,
        frame_count=_int(task.findtext("size")),
        width=_int(task.findtext("original_size/width")),
        height=_int(task.findtext("original_size/height")),
        labels=labels,
    )
    checker = BoxChecker(path)
    # A box is known by its track and frame (its origin key), so that importing again adds nothing: a
    # track's second box on a frame would be dropped without a word, and two tracks of one id would
    # become one animal in VIAME and DIVE, whose tracks are these ids.
    track_ids: set[int] = set()
    for track in root.iterfind("track"):
        track_id, label = track.get("id"), track.get("label")
        where = f'<track id="{track_id}">'
        number = _int(track_id)
        if number is None:
            raise LabelFormatError(f"{path}: {where}: a track needs an integer id")
        if number in track_ids:
            raise LabelFormatError(f"{path}: {where}: a second track with this id")
        track_ids.add(number)
        frames: set[int] = set()
        if label is None:
            raise LabelFormatError(f"{path}: {where}: a track needs a label")
        species = lookup.get(normalise_species(label).lower())
        if species is None:
            raise LabelFormatError(f'{path}: {where}: unknown label "{label}" '
                                   f"(the file's <labels> list {sorted(labels)})")
        for box in track.iterfind("box"):
            frame = _int(box.get("frame"))
            where = f'<track id="{track_id}"> <box frame="{box.get("frame")}">'
            if frame is None or frame < 0:
                raise LabelFormatError(f"{path}: {where}: frame must be a non-negative integer")
            if frame in frames:
                raise LabelFormatError(f"{path}: {where}: a second box of this track on this frame")
            frames.add(frame)
            if box.get("outside") == "1":
                continue
            if video.frame_count is not None and frame >= video.frame_count:
                raise LabelFormatError(f"{path}: {where}: frame is past the task's "
                                       f"{video.frame_count} frames")
            try:
                x1, y1, x2, y2 = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            except (TypeError, ValueError):
                raise LabelFormatError(f"{path}: {where}: xtl, ytl, xbr, ybr must be numbers") from None
            x1, y1, x2, y2 = checker.check(where, x1, y1, x2, y2, video.width, video.height)
            video.boxes.append(BoxRecord(video_id, frame, species, x1, y1, x2, y2,
                                         origin_key=f"cvat:{track_id}", track_id=number))
            if box.get("keyframe") == "1":
                video.keyframes.add(frame)
    if root.find("image") is not None:
        raise LabelFormatError(f"{path}: mixes <image> and <track> elements; not a CVAT video file")
    video.warnings = checker.warnings()
    return video


def read_cvat(path: str | Path, video_id: str | None = None, video_file: Path | None = None,
              split: str | None = None, status: str = "partial") -> ImportBatch:
    """A CVAT video task as an ImportBatch. Frames holding a keyframe box get label ``status``.

    Keyframes are the frames an annotator set by hand; CVAT interpolates the rest, so they are the
    frames to call labeled. The video id is ``video_id``, else the task name, else the file's stem.
    """
    parsed = parse_cvat_video(path)
    vid = video_id or parsed.name or Path(path).stem
    for box in parsed.boxes:
        box.video_id = vid
    batch = ImportBatch(
        videos=[VideoRecord(vid, path=video_file, frame_count=parsed.frame_count, width=parsed.width,
                            height=parsed.height, split=split, source=str(Path(path).name))],
        species=dict(parsed.labels),
        boxes=parsed.boxes,
        warnings=parsed.warnings,
    )
    if status != "none":
        batch.frames = [(vid, f, status) for f in sorted(parsed.keyframes)]
    return batch


@dataclass
class CvatImport:
    video: str | None = option(None, group="import", label="Video file",
                               help="the video file the annotations belong to")
    video_id: str | None = option(None, group="import", label="Video id",
                                  help="id for the video (default: the task name)")
    split: str | None = option(None, group="import", label="Split", choices=SPLITS,
                               help="the video's split (default: as the project has it; none if new)")
    status: str = option("partial", group="import", label="Label status", choices=LABEL_STATUSES,
                         help="label status for frames holding a keyframe box")


FORMAT = Format(
    name="cvat", title="CVAT video XML", source="xml", source_help="the CVAT for video 1.1 XML file",
    file_filter="CVAT XML (*.xml)",
    read=lambda source, o, project, progress: read_cvat(source, o.video_id, Path(o.video) if o.video else None,
                                                        o.split, o.status),
    import_options=CvatImport)
