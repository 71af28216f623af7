"""COCO detection JSON (images, annotations with [x, y, w, h] boxes, categories)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bpr.config import option
from bpr.data.formats.common import (
    Ask,
    BoxChecker,
    BoxRecord,
    DetectionsExport,
    Format,
    ImportBatch,
    LabelFormatError,
    VideoRecord,
    normalise_species,
)
from bpr.data.formats.yolo import default_status
from bpr.data.store import SPLITS, Project, frame_file_name


def _require(obj, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise LabelFormatError(f"{where}: missing '{key}'")
    value = obj[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise LabelFormatError(f"{where}: '{key}' must be {kind.__name__}, found {value!r}")
    return value


CROWD = ("crowd region (iscrowd 1: a group of objects, not one animal)",
         "crowd regions (iscrowd 1: a group of objects, not one animal)")


def read_coco(path: str | Path, images_dir: str | Path | None = None, split: str | None = None,
              status: str | None = None) -> ImportBatch:
    """A COCO file as an ImportBatch; each image is a single-frame video named by its file name.

    File names are relative to ``images_dir``; by default the ``info.images_root`` of a bpr export, or
    else the JSON's folder.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise LabelFormatError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise LabelFormatError(f"{path}: line {e.lineno}, column {e.colno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise LabelFormatError(f"{path}: expected a JSON object with images, annotations, categories")
    sections = {key: data.get(key) for key in ("images", "annotations", "categories")}
    for key, value in sections.items():
        if not isinstance(value, list):
            raise LabelFormatError(f"{path}: '{key}' must be a list")
    if not images_dir:  # bpr's own exports say where their file names start; else beside the JSON
        root = data.get("info", {}).get("images_root") if isinstance(data.get("info"), dict) else None
        images_dir = root if isinstance(root, str) and Path(root).is_dir() else path.parent
    images_dir = Path(images_dir)
    status = status or default_status(split)

    categories: dict[int, str] = {}
    for i, cat in enumerate(sections["categories"]):
        where = f"{path}: categories[{i}]"
        cid = _require(cat, "id", int, where)
        if cid in categories:  # the later name would silently relabel the earlier one's boxes
            raise LabelFormatError(f"{where}: category id {cid} appears twice")
        categories[cid] = normalise_species(_require(cat, "name", str, where))
    batch = ImportBatch(species={name: None for name in categories.values()})

    images: dict[int, tuple[str, int, int]] = {}
    named: dict[str, tuple[int, str]] = {}  # image id in the project -> (index, file_name) that gave it
    for i, image in enumerate(sections["images"]):
        where = f"{path}: images[{i}]"
        iid = _require(image, "id", int, where)
        file_name = _require(image, "file_name", str, where)
        width, height = _require(image, "width", int, where), _require(image, "height", int, where)
        if iid in images:
            raise LabelFormatError(f"{where}: image id {iid} appears twice")
        vid = Path(file_name).with_suffix("").as_posix()
        if vid in named:  # one image in the project would take both entries' boxes, and one size
            j, other = named[vid]
            raise LabelFormatError(f"{where}: file_name {file_name!r} names the same image as "
                                   f"images[{j}] ({other!r})")
        named[vid] = (i, file_name)
        images[iid] = (vid, width, height)
        batch.videos.append(VideoRecord(vid, kind="image", path=images_dir / file_name, frame_count=1,
                                        width=width, height=height, split=split, source=path.name))
        batch.frames.append((vid, 0, status))

    checker = BoxChecker(path)
    annotation_ids: set[int] = set()
    for i, ann in enumerate(sections["annotations"]):
        where = f"annotations[{i}]"
        aid = _require(ann, "id", int, f"{path}: {where}")
        iid = _require(ann, "image_id", int, f"{path}: {where}")
        cid = _require(ann, "category_id", int, f"{path}: {where}")
        where = f"annotation id {aid}"
        if aid in annotation_ids:  # a box is known by its id: the second would be dropped unseen
            raise LabelFormatError(f"{path}: {where} appears twice")
        annotation_ids.add(aid)
        if iid not in images:
            raise LabelFormatError(f"{path}: {where}: image_id {iid} is not among the images")
        if cid not in categories:
            raise LabelFormatError(f"{path}: {where}: category_id {cid} is not among the categories")
        if ann.get("iscrowd") in (1, True):  # a group of objects in one region (pycocotools ignores it too)
            batch.leave_out(CROWD, path, where)
            continue
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise LabelFormatError(f"{path}: {where}: bbox must be [x, y, width, height]")
        vid, width, height = images[iid]
        x, y, w, h = (float(v) for v in bbox)
        checked = checker.check(where, x, y, x + w, y + h, width, height)
        if checked is not None:
            batch.boxes.append(BoxRecord(vid, 0, categories[cid], *checked, origin_key=f"coco:{aid}"))
    checker.report_to(batch)
    return batch


def export_coco(project: Project, path: str | os.PathLike, run: str | None = None,
                statuses: tuple[str, ...] = ("partial", "full"), min_conf: float = 0.0) -> Path:
    """Write the labeled frames as COCO: a ground-truth file, or (``run``) that run's detections on
    the same frames in COCO's results format (a list of {image_id, category_id, bbox, score}).

    Image ids number the labeled frames in (video, frame) order, so both files line up for
    pycocotools. An image's file name is its file's path relative to the folder holding all the
    exported images (``info.images_root``), so other tools open the originals; a video's frame has
    no file of its own and gets the name ``export-yolo`` gives it.
    """

    path = Path(path)
    videos = {v["id"]: v for v in project.videos()}
    marks = ",".join("?" * len(statuses))
    frames = project.conn.execute(
        f"SELECT video_id, frame_index FROM frames WHERE label_status IN ({marks}) "
        "ORDER BY video_id, frame_index", statuses).fetchall()
    image_ids = {key: i for i, key in enumerate(frames, 1)}
    root, names = _file_names(project, [videos[v] for v in dict.fromkeys(v for v, _ in frames)])
    if run is None:
        data = {
            "info": {"description": f"exported by bpr from {project.folder}",
                     **({"images_root": str(root)} if root else {})},
            "images": [{"id": image_ids[(v, f)], "file_name": names.get(v) or frame_file_name(videos[v], f),
                        "width": videos[v]["width"], "height": videos[v]["height"],
                        "video_id": v, "frame_index": f} for v, f in frames],
            "categories": [{"id": s["id"], "name": s["name"]} for s in project.species()],
            "annotations": [],
        }
        for box_id, v, f, sid, x1, y1, x2, y2 in project.conn.execute(
                "SELECT id, video_id, frame_index, species_id, x1, y1, x2, y2 FROM boxes "
                "ORDER BY video_id, frame_index, id"):
            if (v, f) in image_ids:
                data["annotations"].append({
                    "id": box_id, "image_id": image_ids[(v, f)], "category_id": sid,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                    "segmentation": []})  # boxes only; datumaro warns of every annotation without the key
    else:
        run_id = project.run_id(run)
        data = [{"image_id": image_ids[(v, f)], "category_id": sid, "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "score": conf}
                for v, f, sid, x1, y1, x2, y2, conf in project.conn.execute(
                    "SELECT video_id, frame_index, species_id, x1, y1, x2, y2, confidence FROM detections "
                    "WHERE run_id = ? AND confidence >= ? ORDER BY video_id, frame_index, id",
                    (run_id, min_conf))
                if (v, f) in image_ids]
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(json.dumps(data))
    temporary.replace(path)
    return path


def _file_names(project: Project, videos: list[dict]) -> tuple[Path | None, dict[str, str]]:
    """The folder holding every image file among ``videos``, and each image's path relative to it."""
    files = {v["id"]: project.resolve_path(v["path"]).absolute()
             for v in videos if v["kind"] == "image" and v["path"]}
    if not files:
        return None, {}
    try:
        root = Path(os.path.commonpath([f.parent for f in files.values()]))
    except ValueError:  # no common folder (Windows drives): all get their export-yolo names
        return None, {}
    return root, {vid: f.relative_to(root).as_posix() for vid, f in files.items()}


@dataclass
class CocoImport:
    images: str | None = option(None, group="import", label="Images folder",
                                help="folder the file names are relative to (default: the info.images_root "
                                     "bpr's exports give, else the JSON's folder)")
    split: str | None = option(None, group="import", label="Split", choices=SPLITS,
                               help="the images' split (default: as the project has it; none if new)")
    status: str | None = option(None, group="import", label="Label status", choices=("partial", "full"),
                                help="label status of the images (default: partial for train, else full)")


def _write(project: Project, out, options: DetectionsExport, progress=None, cancel=None) -> list[str]:
    path = export_coco(project, out, run=options.run, min_conf=options.min_conf)
    return [f"wrote {path} ({'detections of ' + options.run + ' (COCO results)' if options.run else 'labels'})"]


FORMAT = Format(
    name="coco", title="COCO JSON", source="json", source_help="the COCO detection JSON file",
    file_filter="COCO JSON (*.json)",
    read=lambda source, o, project, progress: read_coco(source, o.images, o.split, o.status),
    import_options=CocoImport,
    asks=(Ask("images", "Images folder (cancel: the one a bpr export names, else the JSON's)"),),
    write=_write, export_options=DetectionsExport, export_title="COCO JSON",
    export_help="COCO JSON of the labeled frames",
    export_file="labels.json", export_filter="COCO JSON (*.json)")
