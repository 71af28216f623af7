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
    """One parsed CVAT video task (or job of one)."""

    file: Path
    name: str                              # the task name (DUSIA: the 20-digit video id)
    source: str | None                     # the video file name CVAT recorded, if any
    frame_count: int | None                # the video's frames, where the task covers all of them
    width: int | None
    height: int | None
    labels: dict[str, str | None]          # label name -> colour
    split: str | None = None               # a project's task subset (Train, Validation, Test), as a split
    boxes: list[BoxRecord] = field(default_factory=list)   # video_id filled in by the caller
    keyframes: set[int] = field(default_factory=set)        # frames holding a keyframe box
    checker: BoxChecker | None = None      # what the file's boxes left out, and clipped


@dataclass
class _Task:
    """A task's (or job's) <meta> entry: which of the video's frames it holds."""

    id: str | None
    name: str
    size: int | None
    start: int            # the video frame of the task's first frame
    stop: int | None      # ... of its last
    step: int             # frame_filter step=K: every K-th frame
    width: int | None
    height: int | None
    subset: str | None

    @property
    def last_frame(self) -> int | None:
        """The video frame of the task's last frame. CVAT writes a box's frame as the video's frame
        (start_frame + step x the task's own frame number), in task, job and project exports alike."""
        if self.stop is not None:
            return self.stop
        return self.start + (self.size - 1) * self.step if self.size else None


SUBSETS = {"train": "train", "training": "train", "validation": "val", "val": "val", "test": "test"}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _task(element: ET.Element, meta: ET.Element) -> _Task:
    step = 1
    for part in (element.findtext("frame_filter") or "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == "step" and (_int(value.strip()) or 0) > 0:
            step = int(value)
    size = element.find("original_size")
    if size is None:
        size = meta.find("original_size")  # a job export keeps it under <meta>
    subset = (element.findtext("subset") or "").strip().lower()
    return _Task(
        id=(element.findtext("id") or "").strip() or None,
        name=(element.findtext("name") or "").strip(),
        size=_int(element.findtext("size")),
        start=_int(element.findtext("start_frame")) or 0,
        stop=_int(element.findtext("stop_frame")),
        step=step,
        width=_int(size.findtext("width")) if size is not None else None,
        height=_int(size.findtext("height")) if size is not None else None,
        subset=SUBSETS.get(subset),
    )


def parse_cvat(path: str | Path) -> list[CvatVideo]:
    """Parse a CVAT for video 1.1 file: a task's export, a job's, or a project's (one video a task).

    Boxes with ``outside="1"`` are not objects and are skipped. Every other box becomes a BoxRecord
    (interpolated ones included, with their track id), at the video frame CVAT writes; its origin key
    is ``cvat:<track id>``, unique per frame since a track has one box per frame.
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
    meta = root.find("meta")
    owner = None if meta is None else next(
        (meta.find(tag) for tag in ("task", "job", "project") if meta.find(tag) is not None), None)
    if owner is None:
        raise LabelFormatError(f"{path}: no <meta><task>, <job> or <project> element: not a CVAT for video 1.1 "
                               "file")
    if owner.tag == "project":
        tasks = [_task(t, meta) for t in owner.iterfind("tasks/task")]
        if not tasks:
            raise LabelFormatError(f"{path}: <meta><project> lists no <tasks><task>")
    else:
        tasks = [_task(owner, meta)]

    labels: dict[str, str | None] = {}
    for label in owner.iterfind("labels/label"):
        name = normalise_species(label.findtext("name") or "")
        if name:
            labels[name] = label.findtext("color") or None
    lookup = {name.lower(): name for name in labels}

    source = (root.findtext("meta/source") or "").strip() or None
    checker = BoxChecker(path)
    videos: dict[str | None, tuple[_Task, CvatVideo]] = {}  # by task id in a project export, else None
    for task in tasks:
        whole = task.start == 0 and task.step == 1 and owner.tag != "job"  # the task holds every frame
        videos[task.id if owner.tag == "project" else None] = task, CvatVideo(
            file=path, name=task.name or (f"task{task.id}" if owner.tag == "project" else ""),
            source=source, frame_count=task.size if whole else None, width=task.width, height=task.height,
            labels=labels, split=task.subset, checker=checker)
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
        key = track.get("task_id") if owner.tag == "project" else None
        if key not in videos:
            raise LabelFormatError(f"{path}: {where}: task_id {key!r} is not among the project's tasks "
                                   f"({', '.join(str(t.id) for t in tasks)})")
        task, video = videos[key]
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
            last = task.last_frame
            if frame < task.start or (last is not None and frame > last):
                raise LabelFormatError(f"{path}: {where}: frame is outside the {owner.tag}'s frames "
                                       f"({task.start} to {last if last is not None else '?'})")
            try:
                x1, y1, x2, y2 = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            except (TypeError, ValueError):
                raise LabelFormatError(f"{path}: {where}: xtl, ytl, xbr, ybr must be numbers") from None
            checked = checker.check(where, x1, y1, x2, y2, video.width, video.height)
            if checked is None:
                continue
            video.boxes.append(BoxRecord("", frame, species, *checked, origin_key=f"cvat:{track_id}",
                                         track_id=number))
            if box.get("keyframe") == "1":
                video.keyframes.add(frame)
    if root.find("image") is not None:
        raise LabelFormatError(f"{path}: mixes <image> and <track> elements; not a CVAT video file")
    return [video for _, video in videos.values()]


def parse_cvat_video(path: str | Path) -> CvatVideo:
    """Parse a CVAT for video 1.1 file of one video: a task's or a job's export."""
    videos = parse_cvat(path)
    if len(videos) > 1:
        raise LabelFormatError(f"{path}: a CVAT project export of {len(videos)} tasks; this needs one video's file "
                               "(export the task, or import the project's file on its own)")
    return videos[0]


def read_cvat(path: str | Path, video_id: str | None = None, video_file: Path | None = None,
              split: str | None = None, status: str = "partial") -> ImportBatch:
    """A CVAT export as an ImportBatch: a task's or a job's (one video), or a project's (one video a
    task, each taking its task's subset as its split unless ``split`` is given). Frames holding a
    keyframe box get label ``status``.

    Keyframes are the frames an annotator set by hand; CVAT interpolates the rest, so they are the
    frames to call labeled. A video's id is ``video_id``, else the task name, else the file's stem.
    """
    videos = parse_cvat(path)
    if len(videos) > 1 and (video_id or video_file):
        raise LabelFormatError(f"{path}: a CVAT project export of {len(videos)} tasks (videos): import it without "
                               "a video id or file; each task's name becomes its video's id, and its file is "
                               "found with `bpr link-videos`")
    batch = ImportBatch()
    for parsed in videos:
        vid = video_id or parsed.name or Path(path).stem
        for box in parsed.boxes:
            box.video_id = vid
        batch.videos.append(VideoRecord(vid, path=video_file, frame_count=parsed.frame_count, width=parsed.width,
                                        height=parsed.height, split=split or parsed.split,
                                        source=str(Path(path).name)))
        for name, color in parsed.labels.items():
            batch.species.setdefault(name, color)
        batch.boxes += parsed.boxes
        if status != "none":
            batch.frames += [(vid, f, status) for f in sorted(parsed.keyframes)]
    if videos and videos[0].checker is not None:
        videos[0].checker.report_to(batch)
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
