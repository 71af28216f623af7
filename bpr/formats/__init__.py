"""Importers: each reads and checks a whole source first, then writes it in one transaction."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

from bpr.formats.coco import export_coco, read_coco
from bpr.formats.common import ImportReport, LabelFormatError, Progress, write_batch
from bpr.formats.cvat import read_cvat
from bpr.formats.dusia import find_video, read_dusia
from bpr.formats.viame import ViameImport, export_viame, read_viame, read_viame_images
from bpr.formats.viame import read_into as read_viame_into
from bpr.formats.yolo import read_yolo
from bpr.media import probe_video_file
from bpr.store import Project, counted, image_file_name, source_counts

__all__ = [
    "ImportReport", "LabelFormatError", "import_coco", "import_cvat", "import_dusia", "import_yolo",
    "export_coco", "export_viame", "import_viame", "describe_links", "link_video", "link_videos", "read_coco",
    "read_cvat", "read_dusia", "read_viame", "read_viame_images", "read_yolo", "write_batch",
]


def import_dusia(project: Project, root: str | Path, videos_dir: str | Path | None = None,
                 progress: Progress | None = None) -> ImportReport:
    return write_batch(project, read_dusia(root, videos_dir, progress), progress)


def import_cvat(project: Project, xml: str | Path, video_id: str | None = None,
                video_file: str | Path | None = None, split: str | None = None,
                status: str = "partial", progress: Progress | None = None) -> ImportReport:
    batch = read_cvat(xml, video_id, Path(video_file) if video_file else None, split, status)
    return write_batch(project, batch, progress)


def import_yolo(project: Project, data_yaml: str | Path, train_status: str = "partial",
                progress: Progress | None = None) -> ImportReport:
    return write_batch(project, read_yolo(data_yaml, train_status, progress), progress)


def import_coco(project: Project, json_path: str | Path, images_dir: str | Path | None = None,
                split: str | None = None, status: str | None = None,
                progress: Progress | None = None) -> ImportReport:
    return write_batch(project, read_coco(json_path, images_dir, split, status), progress)


def import_viame(project: Project, csv_path: str | Path, video_id: str | None = None,
                 split: str | None = None, status: str = "none", images_dir: str | Path | None = None,
                 progress: Progress | None = None, replace: bool = False) -> ImportReport:
    """A VIAME CSV into one video or into the images of a folder (see viame.read_into).

    By default the CSV's boxes are added to the labels (those already there are not added twice).
    With ``replace`` they become the labels of that video or image folder, so boxes moved or deleted
    in DIVE are moved or deleted here too.
    """
    options = ViameImport(video_id=video_id, images=str(images_dir) if images_dir is not None else None,
                          split=split, status=status, replace=replace)
    return write_batch(project, read_viame_into(csv_path, options, project), progress)


def link_videos(project: Project, folder: str | Path | Iterable[str | Path]) -> dict[str, list[str]]:
    """Find in ``folder`` (or in each of several folders, first match wins) the files of the videos and
    images that have none, or whose file is gone (the data moved: another drive, another machine), and
    record them.

    A video is looked for as <id>.<ext> in a folder. An image is looked for under its id's folder,
    then in the folder itself, by its file name: for a YOLO set, the folder is the set's new root.
    Returns {"linked": video ids, "linked_images": image ids, "unreadable": ["id: reason"],
    "still_missing": ids, "frame_count_mismatch": ["id: ..."]}.
    """
    folders = [Path(folder)] if isinstance(folder, (str, os.PathLike)) else [Path(f) for f in folder]
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"{f}: no such folder")
    result: dict[str, list[str]] = {"linked": [], "linked_images": [], "unreadable": [], "still_missing": [],
                                    "frame_count_mismatch": []}
    found = []  # (id, path, info, status, reason), written at the end in one commit
    for video in project.videos():
        if video["status"] == "ok" and video["path"] and os.path.exists(project.resolve_path(video["path"])):
            continue
        if video["kind"] == "image":
            name = image_file_name(video)
            path = next((c for f in folders for c in (f / posixpath.dirname(video["id"]) / name, f / name)
                         if c.is_file()), None)
            if path is None:
                result["still_missing"].append(video["id"])
            else:
                found.append((video["id"], path, None, "ok", None))
                result["linked_images"].append(video["id"])
            continue
        path = next((p for p in (find_video(f, video["id"]) for f in folders) if p is not None), None)
        if path is None:
            result["still_missing"].append(video["id"])
            continue
        info, status, reason, mismatch = probe_video_file(video, path)
        if mismatch:
            result["frame_count_mismatch"].append(mismatch)
        found.append((video["id"], path, info, status, reason))
        (result["linked"] if status == "ok" else result["unreadable"]).append(
            video["id"] if status == "ok" else f"{video['id']}: {reason}")
    if found:
        with project.transaction():
            for row in found:
                project.set_video_file(*row)
    return result


def link_video(project: Project, video_id: str, path: str | os.PathLike) -> tuple[str, str | None]:
    """Record ``path`` as the file of one video: (its status, "ok", "unreadable" or "missing", and what
    is wrong with it, or None)."""
    info, status, reason, mismatch = probe_video_file(project.video(video_id), path)
    project.set_video_file(video_id, path, info, status, reason)
    return status, (mismatch or f"{video_id}: {reason}") if status != "ok" or mismatch else None


def describe_links(result: dict[str, list[str]]) -> str:
    """One line on what link_videos found."""
    images = len(result["linked_images"])
    return (f"linked {counted(source_counts(len(result['linked']) + images, images))}; "
            f"{len(result['still_missing'])} still missing")
