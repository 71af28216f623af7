"""Importers: each reads and checks a whole source first, then writes it in one transaction."""

from __future__ import annotations

from pathlib import Path

from bpr.data.formats.coco import export_coco, read_coco
from bpr.data.formats.common import ImportReport, LabelFormatError, write_batch
from bpr.data.formats.cvat import read_cvat
from bpr.data.formats.dusia import read_dusia
from bpr.data.formats.viame import ViameImport, export_viame, read_viame, read_viame_images
from bpr.data.formats.viame import read_into as read_viame_into
from bpr.data.formats.yolo import read_yolo
from bpr.data.store import Project
from bpr.progress import Progress

__all__ = [
    "ImportReport", "LabelFormatError", "import_coco", "import_cvat", "import_dusia", "import_yolo",
    "export_coco", "export_viame", "import_viame", "read_coco", "read_cvat", "read_dusia", "read_viame",
    "read_viame_images", "read_yolo", "write_batch",
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
