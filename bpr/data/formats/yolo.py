"""YOLO datasets (an ultralytics data.yaml with train/val/test image folders and txt labels).

Each image becomes a single-frame "video" (kind 'image') whose id is the image's path relative to the
dataset root, without extension (e.g. ``train/images/0001``). Keeping stills as stills means the
exported training set hard-links the original file instead of re-encoding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from bpr.config import option
from bpr.data.formats.common import (
    BoxChecker,
    BoxRecord,
    Format,
    ImportBatch,
    LabelFormatError,
    Progress,
    VideoRecord,
    normalise_species,
)
from bpr.data.media import VideoError, image_size, is_image


def default_status(split: str | None) -> str:
    """DUSIA's protocol: training frames are partially labeled, val/test frames fully."""
    return "partial" if split == "train" else "full"


def read_data_yaml(path: str | Path) -> tuple[Path, dict[str, list[Path]], list[str]]:
    """(dataset root, {split: image files}, class names) from an ultralytics data.yaml."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise LabelFormatError(f"{path}: cannot be read ({e})") from None
    except yaml.YAMLError as e:
        raise LabelFormatError(f"{path}: malformed YAML ({e})") from None
    if not isinstance(data, dict):
        raise LabelFormatError(f"{path}: expected a mapping with train/val/test and names")
    if "validation" in data and "val" not in data:  # as ultralytics reads it
        data["val"] = data.pop("validation")
    names = data.get("names")
    nc = data.get("nc")
    if names is None and isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
        names = [f"class_{i}" for i in range(nc)]  # ultralytics names them so
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise LabelFormatError(f"{path}: names must map class numbers to names") from None
        if keys != list(range(len(keys))):
            raise LabelFormatError(f"{path}: class numbers in names must be 0..{len(keys) - 1}")
        names = [str(names[k] if k in names else names[str(k)]) for k in keys]
    if not isinstance(names, list) or not names:
        raise LabelFormatError(f"{path}: 'names' must list the class names (or 'nc' give their number)")
    if isinstance(nc, int) and nc != len(names):
        raise LabelFormatError(f"{path}: nc is {nc} but names lists {len(names)} classes")
    names = [normalise_species(str(n)) for n in names]
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else (path.parent / root)
    root = root.resolve()

    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        entry = data.get(split)
        if not entry:
            continue
        images: list[Path] = []
        for item in entry if isinstance(entry, list) else [entry]:
            location = Path(str(item))
            if not location.is_absolute():
                location = root / location
                if not location.exists() and str(item).startswith("../"):
                    # Roboflow writes `train: ../train/images` beside train/; ultralytics retries without ../
                    location = root / str(item)[3:]
            if location.is_dir():
                images += sorted(p for p in location.rglob("*") if is_image(p))
            elif location.suffix == ".txt" and location.is_file():
                for line in location.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        image = Path(line.strip())
                        images.append(image if image.is_absolute() else (root / image).resolve())
            else:
                raise LabelFormatError(f"{path}: {split}: {location} is neither a folder nor a .txt list")
        splits[split] = images
    if not splits:
        raise LabelFormatError(f"{path}: names no train, val or test images")
    return root, splits, names


def label_path(image: Path) -> Path:
    """Where ultralytics looks for an image's labels: the last /images/ swapped for /labels/."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_label_file(path: Path, names: list[str], width: int, height: int, video_id: str,
                    checker: BoxChecker) -> list[BoxRecord]:
    """Boxes of one YOLO txt file (class x_center y_center width height, normalised; or a class and a
    polygon's points, whose box is taken, as ultralytics does with a segmentation dataset)."""
    boxes = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{path}: not a text label file") from None
    for number, line in enumerate(text.splitlines(), 1):
        columns = line.split()
        if not columns:
            continue
        where = f"line {number}"
        polygon = len(columns) >= 7 and len(columns) % 2 == 1  # class x1 y1 x2 y2 x3 y3 ...: a segment
        if len(columns) != 5 and not polygon:
            raise LabelFormatError(f"{path}:{number}: expected 5 columns (class x_center y_center "
                                   f"width height), or a class and 3 or more x y points, found {len(columns)}")
        try:
            cls = int(columns[0])
            values = [float(c) for c in columns[1:]]
        except ValueError:
            raise LabelFormatError(f"{path}:{number}: not numbers: {line.strip()!r}") from None
        if polygon:  # a segmentation dataset's outline: its box, as ultralytics trains a detector on it
            xs, ys = values[0::2], values[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            cx, cy, w, h = values
        if not 0 <= cls < len(names):
            raise LabelFormatError(f"{path}:{number}: class {cls} is out of range "
                                   f"(data.yaml names {len(names)} classes: 0..{len(names) - 1})")
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        x2, y2 = (cx + w / 2) * width, (cy + h / 2) * height
        checked = checker.check(where, x1, y1, x2, y2, width, height)
        if checked is not None:
            boxes.append(BoxRecord(video_id, 0, names[cls], *checked, origin_key=f"yolo:{number}"))
    return boxes


def read_yolo(data_yaml: str | Path, train_status: str = "partial",
              progress: Progress | None = None) -> ImportBatch:
    """A YOLO dataset as an ImportBatch: train images ``train_status``, val/test images ``full``."""
    root, splits, names = read_data_yaml(data_yaml)
    batch = ImportBatch(species={name: None for name in names})
    total = sum(len(images) for images in splits.values())
    done = 0
    listed: dict[str, tuple[str, Path]] = {}  # image id -> (split, file) that gave it
    for split, images in splits.items():
        status = train_status if split == "train" else default_status(split)
        for image in images:
            done += 1
            try:
                vid = image.relative_to(root).with_suffix("").as_posix()
            except ValueError:
                vid = image.with_suffix("").as_posix().lstrip("/")
            if vid in listed:
                # An image is in one split of a project: a `val: train/images` set would move every
                # training image to val, and leave nothing to train on.
                other_split, other = listed[vid]
                if (other_split, other) == (split, image):
                    continue  # listed twice in the same split: once is enough
                where = "again" if other == image else f"as {other.name}, the same image id {vid}"
                raise LabelFormatError(f"{data_yaml}: {split} lists {image}, which {other_split} lists "
                                       f"{where}; give each split its own images")
            listed[vid] = (split, image)
            try:
                width, height = image_size(image)
            except FileNotFoundError:
                raise LabelFormatError(f"{data_yaml}: {split} lists {image}, which does not exist") from None
            except VideoError as e:
                raise LabelFormatError(str(e)) from None
            batch.videos.append(VideoRecord(vid, kind="image", path=image, frame_count=1,
                                            width=width, height=height, split=split,
                                            source=str(Path(data_yaml).name)))
            batch.frames.append((vid, 0, status))
            labels = label_path(image)
            if labels.exists():
                checker = BoxChecker(labels)
                batch.boxes += read_label_file(labels, names, width, height, vid, checker)
                checker.report_to(batch)
            if progress and (done % 50 == 0 or done == total):
                progress(done, total, "read images and labels")
    return batch


@dataclass
class YoloImport:
    train_status: str = option("partial", group="import", label="Training images are", choices=("partial", "full"),
                               help="label status of training images (val/test are full)")


FORMAT = Format(
    name="yolo", title="YOLO data.yaml", source="data_yaml", source_help="the dataset's data.yaml",
    file_filter="YOLO data.yaml (*.yaml *.yml)",
    read=lambda source, options, project, progress: read_yolo(source, options.train_status, progress),
    import_options=YoloImport)
