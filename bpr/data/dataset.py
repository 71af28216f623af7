"""Materialise a training set from the store as ultralytics reads it: images/, labels/, data.yaml.

Each export gets real ``images/`` folders (hard links, or copies across file systems) with its own
``labels/`` beside them. ultralytics resolves folder symlinks and then looks for labels next to the
*original* images, so a symlinked folder would silently train on the wrong labels (tests/bpr/test_dataset.py
reads each export back through ultralytics to prove it does not).
Frames cut from video are written as JPEG once, into the project's cache, and linked from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from bpr.progress import Progress
from bpr.data.media import VideoError, VideoReader
from bpr.data.store import LINK_HINT, Project, counted, frame_file_name, safe_stem, source_counts

# Which labeled frames each split contributes. "dusia" (the default): training keyframes (partial,
# and any full ones) for train, and only fully labeled frames for val and test, so that evaluation is
# never punished for animals nobody boxed. "all-labeled": every labeled frame in every split, for
# datasets whose val/test frames are not marked full.
PROTOCOLS = {
    "dusia": {"train": ("partial", "full"), "val": ("full",), "test": ("full",)},
    "all-labeled": {"train": ("partial", "full"), "val": ("partial", "full"), "test": ("partial", "full")},
}
EXPORT_MANIFEST = "export.json"
# Beside a split's images/ and labels/: each image's ignore regions, as YOLO label lines, and its
# pseudo-boxes weighted by score, as YOLO label lines with the teacher's score last (ultralytics refuses
# the negative classes they travel as in training: bpr.learn.pseudo.add_teacher_rows).
IGNORE_FOLDER = "ignore_regions"
PSEUDO_FOLDER = "pseudo_boxes"


class ExportError(Exception):
    """The export cannot be written (its folder holds other files, no frames selected, ...)."""


@dataclass
class ExportResult:
    data_yaml: Path
    names: list[str]
    images: dict[str, int] = field(default_factory=dict)   # split -> images written
    boxes: dict[str, int] = field(default_factory=dict)    # split -> boxes in the label files
    hidden_boxes: int = 0
    pseudo_boxes: int = 0       # a teacher run's pseudo-boxes written as training labels (or beside them)
    ignore_regions: int = 0     # and its ignore regions, written beside them
    skipped_frames: dict[str, int] = field(default_factory=dict)  # video id -> frames left out
    partial_images: list[str] = field(default_factory=list)  # train image names of partial frames
    labels_sha256: dict[str, str] = field(default_factory=dict)  # split -> checksum of its labels (files less
                                                                 # any pseudo-boxes)
    warnings: list[str] = field(default_factory=list)


def frame_cache_path(project: Project, video_id: str, frame_index: int) -> Path:
    return project.cache_dir / "frames" / safe_stem(video_id) / f"{frame_index:07d}.jpg"


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _prepare_folder(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a folder")
        if any(out.iterdir()):
            if not (out / EXPORT_MANIFEST).exists():
                raise ExportError(f"{out} is not empty and is not an earlier export: choose an empty "
                                  "or new folder")
            shutil.rmtree(out)  # an earlier export of ours: replace it whole, never half
    out.mkdir(parents=True, exist_ok=True)


def export_yolo(project: Project, out: str | Path, species: list[str] | None = None,
                splits: tuple[str, ...] = ("train", "val", "test"), hide_fraction: float = 0.0,
                keep_per_image: int = 0, seed: int = 0, protocol: str = "dusia", pseudo_from: str | None = None,
                pseudo_as_ignore: bool = False, pseudo_weighted: bool = False, ignore_band: bool = True,
                hidden_as_ignore: bool = False, progress: Progress | None = None, cancel=None) -> ExportResult:
    """Write the project's labeled frames as a YOLO dataset in ``out``.

    species: names to train on (default: every species marked for training), in class order.
    hide_fraction: hide this fraction of the *training* boxes, chosen with ``seed`` — to build a
    controlled partial-label benchmark from fully labeled data. Val/test boxes are never hidden.
    keep_per_image: instead, hide all but this many boxes of each training image, chosen with ``seed``
    (0: off).
    protocol: which labeled frames each split takes (see PROTOCOLS).
    pseudo_from: a teacher run whose pseudo-boxes (bpr.learn.pseudo) on the partially labeled training
    frames are written as labels, and whose ignore regions are written beside them (IGNORE_FOLDER);
    with ``pseudo_as_ignore`` its pseudo-boxes are written as ignore regions too (the ignore band alone);
    with ``pseudo_weighted`` they are written beside the labels with their scores (PSEUDO_FOLDER), to be
    trained on weighted by score; without ``ignore_band`` its ignore regions are left out (its pseudo-boxes
    alone).
    hidden_as_ignore: the hidden boxes of partially labeled training frames are written as ignore regions
    (a benchmark's oracle: the ignore band of a teacher that found every hidden animal).
    cancel: optional callable returning True to stop between frames (raises ExportError).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, not {protocol!r}")
    if not 0.0 <= hide_fraction <= 1.0:
        raise ValueError(f"hide_fraction must be within 0..1, not {hide_fraction}")
    if hide_fraction > 0 and keep_per_image > 0:
        raise ValueError("hide_fraction and keep_per_image both hide training boxes: use one of them")
    out = Path(out).absolute()
    all_species = project.species()
    if species is None:
        chosen = [s for s in all_species if s["in_training"]]
    else:
        by_name = {s["name"].lower(): s for s in all_species}
        unknown = [name for name in species if name.lower() not in by_name]
        if unknown:
            raise ExportError(f"unknown species {unknown}; the project has "
                              f"{[s['name'] for s in all_species]}")
        chosen = [by_name[name.lower()] for name in species]
    if not chosen:
        raise ExportError("no species chosen for training")
    class_of = {s["id"]: i for i, s in enumerate(chosen)}
    names = [s["name"] for s in chosen]

    # Select frames and their boxes.
    project.check_files()  # a file deleted since it was recorded is left out like a missing one
    videos = {v["id"]: v for v in project.videos()}
    plan: dict[str, list[tuple[str, int]]] = {}
    partial: set[tuple[str, int]] = set()
    result = ExportResult(data_yaml=out / "data.yaml", names=names)
    for split in splits:
        usable = []
        for vid, frame, status in project.split_frames(split, PROTOCOLS[protocol][split]):
            if videos[vid]["status"] == "ok":
                usable.append((vid, frame))
                if split == "train" and status == "partial":
                    partial.add((vid, frame))
            else:
                result.skipped_frames[vid] = result.skipped_frames.get(vid, 0) + 1
        plan[split] = usable
    if result.skipped_frames:
        images = sum(videos[vid]["kind"] == "image" for vid in result.skipped_frames)
        sources = counted(source_counts(len(result.skipped_frames), images))
        result.warnings.append(f"{sum(result.skipped_frames.values())} labeled frame(s) of {sources} "
                               f"without a readable file were left out ({LINK_HINT})")
    if not any(plan.values()):
        raise ExportError("no labeled frames with a readable image or video to export"
                          + (f": {result.warnings[-1]}" if result.skipped_frames else ""))

    boxes: dict[tuple[str, int], list[tuple]] = {}
    wanted = {key for frames in plan.values() for key in frames}
    for row in project.conn.execute(
            "SELECT id, video_id, frame_index, species_id, x1, y1, x2, y2 FROM boxes "
            "ORDER BY video_id, frame_index, id"):
        key = (row[1], row[2])
        if key in wanted and row[3] in class_of:
            boxes.setdefault(key, []).append(row)

    hidden: set[int] = set()
    if hide_fraction > 0 and "train" in plan:
        train_ids = sorted(row[0] for key in plan["train"] for row in boxes.get(key, []))
        count = int(round(hide_fraction * len(train_ids)))
        rng = np.random.default_rng(seed)
        hidden = {train_ids[i] for i in rng.permutation(len(train_ids))[:count]}
    if keep_per_image > 0 and "train" in plan:
        rng = np.random.default_rng(seed)
        for key in plan["train"]:
            ids = sorted(row[0] for row in boxes.get(key, []))
            hidden.update(ids[i] for i in rng.permutation(len(ids))[keep_per_image:])
    result.hidden_boxes = len(hidden)

    pseudo: dict[tuple[str, int], list[dict]] = {}
    if pseudo_from is not None:
        for row in project.pseudo_boxes(teacher=pseudo_from):
            key = (row["video_id"], row["frame_index"])
            if key in partial and (row["kind"] == "ignore" or row["species_id"] in class_of):
                pseudo.setdefault(key, []).append(row)

    _prepare_folder(out)
    total = sum(len(frames) for frames in plan.values())
    done = 0
    readers: dict[str, VideoReader] = {}
    try:
        for split, frames in plan.items():
            image_dir, label_dir = out / split / "images", out / split / "labels"
            image_dir.mkdir(parents=True)
            label_dir.mkdir(parents=True)
            n_boxes = 0
            written: list[tuple[str, str]] = []
            for vid, frame in frames:
                if cancel is not None and cancel():
                    raise ExportError("export cancelled")
                video = videos[vid]
                image = _frame_image(project, video, frame, readers)
                name = frame_file_name(video, frame)
                _link(image, image_dir / name)
                if split == "train" and (vid, frame) in partial:
                    result.partial_images.append(name)
                size = video["width"], video["height"]
                lines = [_yolo_line(class_of[species_id], box, *size)
                         for box_id, _, _, species_id, *box in boxes.get((vid, frame), [])
                         if not (split == "train" and box_id in hidden)]
                n_boxes += len(lines)
                teacher = pseudo.get((vid, frame), []) if split == "train" else []
                as_box = [row["kind"] == "pseudo" and not pseudo_as_ignore for row in teacher]
                extra = [_yolo_line(class_of[row["species_id"]], _xyxy(row), *size)
                         + (f" {row['score']:.6f}" if pseudo_weighted else "")
                         for row, box in zip(teacher, as_box) if box]
                ignore = [_yolo_line(0, _xyxy(row), *size) for row, box in zip(teacher, as_box)
                          if not box and ignore_band]
                if hidden_as_ignore and (vid, frame) in partial:
                    ignore += [_yolo_line(0, box, *size) for box_id, _, _, _, *box in boxes.get((vid, frame), [])
                               if box_id in hidden]
                labels_text = "".join(line + "\n" for line in lines)
                if not pseudo_weighted:
                    lines += extra
                result.pseudo_boxes += len(extra)
                result.ignore_regions += len(ignore)
                for folder, side in ((IGNORE_FOLDER, ignore), (PSEUDO_FOLDER, extra if pseudo_weighted else [])):
                    if side:
                        (out / split / folder).mkdir(exist_ok=True)
                        (out / split / folder / Path(name).with_suffix(".txt")).write_text(
                            "".join(line + "\n" for line in side))
                text = "".join(line + "\n" for line in lines)
                (label_dir / Path(name).with_suffix(".txt")).write_text(text)
                written.append((name, labels_text))  # the labels' checksum: a teacher's pseudo-boxes aside
                done += 1
                if progress and (done % 20 == 0 or done == total):
                    progress(done, total, f"exporting {split}")
            result.images[split] = len(frames)
            result.boxes[split] = n_boxes
            result.labels_sha256[split] = labels_checksum(written)
    except BaseException:  # cancelled, or a file gone: no half export to block the next one
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        for reader in readers.values():
            reader.close()

    data = {"path": str(out), "names": dict(enumerate(names))}
    data.update({split: f"{split}/images" for split in plan})
    result.data_yaml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    manifest = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    manifest.update(project=str(project.folder), hide_fraction=hide_fraction, keep_per_image=keep_per_image,
                    seed=seed, protocol=protocol,
                    hidden_box_ids=sorted(hidden), pseudo_from=pseudo_from, pseudo_as_ignore=pseudo_as_ignore,
                    pseudo_weighted=pseudo_weighted, ignore_band=ignore_band, hidden_as_ignore=hidden_as_ignore)
    (out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1))
    return result


def export_training_set(project: Project, out: str | Path, config, **kwargs) -> ExportResult:
    """export_yolo with the data options of a TrainConfig (species, hidden boxes, seed, protocol)."""
    return export_yolo(project, out, species=config.species, hide_fraction=config.hide_fraction,
                       keep_per_image=config.keep_per_image, seed=config.seed, protocol=config.protocol,
                       hidden_as_ignore=config.hidden_as_ignore, **kwargs)


def _yolo_line(klass: int, box, width: int, height: int) -> str:
    """A YOLO label line for an xyxy box in pixels."""
    x1, y1, x2, y2 = box
    return (f"{klass} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}")


def _xyxy(row: dict) -> tuple[float, float, float, float]:
    return row["x1"], row["y1"], row["x2"], row["y2"]


def labels_checksum(labels: list[tuple[str, str]]) -> str:
    """One checksum of a split's (image name, label file text) pairs, in any order: equal when two
    exports, in any folder or project, give every image the same boxes. It tells whether runs meant to
    be paired (the same seed of hidden boxes) trained on the same labels."""
    digest = hashlib.sha256()
    for name, text in sorted(labels):
        digest.update(f"{name}\0{text}\0".encode())
    return digest.hexdigest()


def _frame_image(project: Project, video: dict, frame: int, readers: dict[str, VideoReader]) -> Path:
    """A file holding this frame: the still itself, or the frame's JPEG in the project cache."""
    source = project.resolve_path(video["path"])
    if video["kind"] == "image":
        if not source.exists():
            raise ExportError(f"{source}: image of {video['id']} is gone ({LINK_HINT})")
        return source
    cached = frame_cache_path(project, video["id"], frame)
    if not cached.exists():
        reader = readers.get(video["id"])
        if reader is None:
            try:
                reader = readers[video["id"]] = VideoReader(source, cache_mb=0)
            except VideoError as e:
                raise ExportError(f"video {video['id']}: {e}") from e
        cached.parent.mkdir(parents=True, exist_ok=True)
        image = reader.read(frame)
        temporary = cached.with_suffix(".part.jpg")
        if not cv2.imwrite(str(temporary), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise ExportError(f"cannot write {temporary}")
        temporary.replace(cached)  # a killed export never leaves a half-written frame in the cache
    return cached
