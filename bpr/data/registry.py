"""The formats the command and the app offer, and the one way an import or an export of any of them runs.

Adding a format means one module declaring its ``FORMAT`` (bpr.data.formats.common.Format) and one entry in
``FORMATS`` below: `bpr import` and `bpr export`, their flags, and the app's Import and Export menus
and dialogs all follow from it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from bpr.data.formats import coco, cvat, dusia, viame, yolo
from bpr.data.formats.common import Format, ImportReport, write_batch
from bpr.progress import Progress
from bpr.data.store import DB_NAME, Project


def _write_yolo(project: Project, out, config, progress=None, cancel=None) -> list[str]:
    """A YOLO training set, as training exports it (bpr.data.dataset)."""
    from bpr.data.dataset import export_training_set

    result = export_training_set(project, out, config, progress=progress, cancel=cancel)
    lines = [f"warning: {warning}" for warning in result.warnings]
    lines += [f"{split}: {n} images, {result.boxes[split]} boxes" for split, n in result.images.items()]
    if result.hidden_boxes:
        lines.append(f"hidden from train: {result.hidden_boxes} boxes (seed {config.seed})")
    return lines + [f"data.yaml: {result.data_yaml}"]


def _yolo() -> Format:
    from bpr.config import TrainConfig

    return dataclasses.replace(
        yolo.FORMAT, write=_write_yolo, export_options=TrainConfig,
        export_option_names=("species", "hide_fraction", "keep_per_image", "protocol", "seed"), export_to_folder=True,
        export_title="YOLO training set",
        export_help="a YOLO training set (images, labels, data.yaml)")


FORMATS: dict[str, Format] = {f.name: f for f in (dusia.FORMAT, cvat.FORMAT, _yolo(), coco.FORMAT, viame.FORMAT)}


def register(format: Format) -> Format:
    """Offer one more format (or another version of one) in the command and the app."""
    FORMATS[format.name] = format
    return format


def importers() -> list[Format]:
    return [f for f in FORMATS.values() if f.read is not None]


def exporters() -> list[Format]:
    return [f for f in FORMATS.values() if f.write is not None]


def import_options(format: Format, **values):
    """The format's import options: its described defaults, with ``values`` by name."""
    return format.import_options(**values) if format.import_options else None


def import_source(folder: str | os.PathLike, format: str, source: str | os.PathLike, options=None,
                  progress: Progress | None = None, strict: bool = False) -> ImportReport:
    """Import ``source`` in ``format`` into the project in ``folder``, created if there is none.

    The whole source is read and checked before the project is touched: a source that cannot be
    imported changes nothing, and leaves no new project folder behind. What the reference tools read
    but bpr cannot import (a box with no area, a crowd region, an empty file) is left out, counted and
    named in the report; ``strict`` refuses the source instead.
    """
    fmt = FORMATS[format]
    source, folder = Path(source), Path(folder)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such {'folder' if fmt.source_is_folder else 'file'}")
    options = options if options is not None else import_options(fmt)
    logged_as = (fmt.name, str(source.resolve()))
    if (folder / DB_NAME).exists():
        with Project.open(folder) as project:
            batch = fmt.read(source, options, project, progress)
            if strict:
                batch.refuse_left_out()
            return write_batch(project, batch, progress, logged_as=logged_as)
    batch = fmt.read(source, options, None, progress)
    if strict:
        batch.refuse_left_out()
    made = not folder.exists()
    try:
        with Project.open(folder, create=True) as project:
            return write_batch(project, batch, progress, logged_as=logged_as)
    except BaseException:
        if made:  # nothing of a failed import stays behind
            shutil.rmtree(folder, ignore_errors=True)
        raise


def export_to(project: Project, format: str, out: str | os.PathLike, options=None,
              progress: Progress | None = None, cancel=None) -> list[str]:
    """Write the project out in ``format``; returns lines saying what was written."""
    fmt = FORMATS[format]
    options = options if options is not None else fmt.export_options()
    return fmt.write(project, Path(out), options, progress, cancel)
