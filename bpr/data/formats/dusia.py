"""DUSIA: one CVAT video XML per video (cvat_annos/), split and frame lists (idd_lsts/), videos optional."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bpr.config import option
from bpr.data.formats.common import Ask, Format, ImportBatch, LabelFormatError, VideoRecord
from bpr.progress import Progress
from bpr.data.formats.cvat import parse_cvat_video
from bpr.data.media import VIDEO_EXTENSIONS

ID_DIGITS = 20
SPLIT_LISTS = {"train": "train_auspec.txt", "val": "val_auspec.txt", "test": "test_auspec.txt"}
# frame list -> (label status, split it belongs to)
FRAME_LISTS = {
    "trainkf_auspec_cvat_frames.txt": "partial",   # training keyframes: some animals unboxed
    "valfull_auspec_cvat_frames.txt": "full",      # every animal of the listed species boxed
    "testfull_auspec_cvat_frames.txt": "full",
}


def video_id(text: str, where: str) -> str:
    """A DUSIA video id as 20 digits: several ids in the split lists lost their leading zeros."""
    text = text.strip()
    if not text.isdigit() or len(text) > ID_DIGITS:
        raise LabelFormatError(f"{where}: {text!r} is not a DUSIA video id (up to {ID_DIGITS} digits)")
    return text.zfill(ID_DIGITS)


def find_layout(root: str | Path) -> tuple[Path, Path]:
    """(cvat_annos folder, idd_lsts folder) under ``root`` or under ``root/data``."""
    root = Path(root)
    for base in (root, root / "data"):
        if (base / "cvat_annos").is_dir() and (base / "idd_lsts").is_dir():
            return base / "cvat_annos", base / "idd_lsts"
    raise LabelFormatError(f"{root}: not a DUSIA folder: expected cvat_annos/ and idd_lsts/ in it "
                           "(or in its data/ folder)")


def find_video(folder: Path | None, vid: str) -> Path | None:
    """The file for video ``vid`` in ``folder``: <id>.<ext>, also with the leading zeros dropped."""
    if folder is None:
        return None
    for stem in (vid, vid.lstrip("0")):
        for ext in VIDEO_EXTENSIONS:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def _lines(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{path}: not a text file") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line.strip()


EMPTY_FILE = ("empty annotation file (its video is recorded with no annotations)",
              "empty annotation files (their videos are recorded with no annotations)")


def read_dusia(root: str | Path, videos_dir: str | Path | None = None,
               progress: Progress | None = None) -> ImportBatch:
    """Read a DUSIA annotation folder into one ImportBatch (nothing is written yet).

    Videos named in the split lists but without an XML (four are absent upstream) are recorded with
    their split and no frames: marking their listed frames ``full`` with no boxes would claim the
    frames are empty.
    """
    annos, lists = find_layout(root)
    videos_dir = Path(videos_dir) if videos_dir else None
    if videos_dir is not None and not videos_dir.is_dir():
        raise LabelFormatError(f"{videos_dir}: the videos folder does not exist")
    batch = ImportBatch()

    splits: dict[str, str | None] = {}
    for split, name in SPLIT_LISTS.items():
        path = lists / name
        if not path.exists():
            batch.warnings.append(f"{path}: no such split list; its videos keep split 'none'")
            continue
        for number, line in _lines(path):
            vid = video_id(line, f"{path}:{number}")
            if splits.get(vid, split) != split:
                raise LabelFormatError(f"{path}:{number}: video {vid} is already in the "
                                       f"{splits[vid]} split list")
            splits[vid] = split

    xmls = sorted(annos.glob("*.xml"))
    if not xmls:
        raise LabelFormatError(f"{annos}: no CVAT XML files")
    frame_counts: dict[str, int | None] = {}
    empty: list[Path] = []  # zero-byte files, as a clone of DUSIA's repository without its large files has
    for done, xml in enumerate(xmls, 1):
        if not xml.read_bytes().strip():
            empty.append(xml)
            splits.setdefault(video_id(xml.stem, f"{xml}: its name"), None)  # recorded, with no annotations
            continue
        parsed = parse_cvat_video(xml)
        vid = video_id(parsed.name or xml.stem, f"{xml}: <task><name>")
        if vid in frame_counts:
            raise LabelFormatError(f"{xml}: a second annotation file for video {vid}")
        frame_counts[vid] = parsed.frame_count
        for box in parsed.boxes:
            box.video_id = vid
        batch.boxes += parsed.boxes
        for name, color in parsed.labels.items():
            batch.species.setdefault(name, color)
        parsed.checker.report_to(batch)
        batch.videos.append(VideoRecord(
            vid, path=find_video(videos_dir, vid), frame_count=parsed.frame_count,
            width=parsed.width, height=parsed.height, split=splits.get(vid), source=xml.name))
        if progress:
            progress(done, len(xmls), f"read {xml.name}")
    for xml in empty:
        batch.leave_out(EMPTY_FILE, annos, xml.name)

    no_xml = sorted(set(splits) - set(frame_counts))
    for vid in no_xml:
        batch.videos.append(VideoRecord(vid, path=find_video(videos_dir, vid), split=splits[vid]))

    skipped: dict[str, int] = {}
    seen: dict[tuple[str, int], str] = {}
    for name, status in FRAME_LISTS.items():
        path = lists / name
        if not path.exists():
            batch.warnings.append(f"{path}: no such frame list; its frames are not marked")
            continue
        for number, line in _lines(path):
            where = f"{path}:{number}"
            vid_text, sep, frame_text = line.rpartition("_")
            if not sep or not frame_text.isdigit():
                raise LabelFormatError(f"{where}: expected <video id>_<frame number>, found {line!r}")
            vid, frame = video_id(vid_text, where), int(frame_text)
            if vid not in frame_counts:
                skipped[vid] = skipped.get(vid, 0) + 1
                continue
            count = frame_counts[vid]
            if count is not None and frame >= count:
                raise LabelFormatError(f"{where}: frame {frame} is past the {count} frames of "
                                       f"video {vid}'s annotation")
            if seen.get((vid, frame), status) != status:
                raise LabelFormatError(f"{where}: frame {frame} of {vid} is listed as both "
                                       f"{seen[(vid, frame)]} and {status}")
            seen[(vid, frame)] = status
    batch.frames = [(vid, frame, status) for (vid, frame), status in seen.items()]

    emptied = {video_id(x.stem, str(x)) for x in empty}
    if missing := [vid for vid in no_xml if vid not in emptied]:
        listed = sum(skipped.get(vid, 0) for vid in missing)
        batch.warnings.append(
            f"{len(missing)} video(s) in the split lists have no annotation file "
            f"({', '.join(missing)}): recorded with their split, and their {listed} listed frame(s) "
            "were not marked")
    unknown = sorted(set(skipped) - set(no_xml))
    if unknown:
        batch.warnings.append(f"frame lists name video(s) in no split list and with no annotation "
                              f"file, skipped: {', '.join(unknown)}")
    return batch


@dataclass
class DusiaImport:
    videos: str | None = option(None, group="import", label="Videos folder",
                                help="folder with the <video id>.mp4 files, if you have them")


FORMAT = Format(
    name="dusia", title="DUSIA folder", source="root", source_is_folder=True,
    source_help="the folder holding cvat_annos/ and idd_lsts/ (or data/ with them)",
    read=lambda source, options, project, progress: read_dusia(source, options.videos, progress),
    import_options=DusiaImport,
    asks=(Ask("videos", "Folder with the videos (cancel if none)"),))
