"""VIAME CSV, the format VIAME and DIVE read and write: one CSV per video or per image folder, one row per box.

Columns: 1 track id, 2 video or image identifier, 3 frame, 4-7 box (TL_x, TL_y, BR_x, BR_y), 8 confidence,
9 target length (-1: none), then (species, confidence) pairs. Lines starting with '#' are the header and
metadata (DIVE writes ``# metadata,fps: 30,...``).

An image folder is one "image sequence" in DIVE: one CSV whose column 2 names each row's image and whose
frame is that image's place in the folder, in natural order (``img2`` before ``img10``).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
from bpr.data.media import VideoError, folder_images, image_size, is_image
from bpr.data.store import LABEL_STATUSES, SPLITS, NotFoundError, Project, image_file_name, unique_name

UNREADABLE = ("image without boxes that cannot be read", "images without boxes that cannot be read")
UNTYPED = "unknown"  # the species of a row without a species,confidence pair, as DIVE names it
HEADER = ("# 1: Detection or Track-id,2: Video or Image Identifier,3: Unique Frame Identifier,"
          "4-7: Img-bbox(TL_x,TL_y,BR_x,BR_y),8: Detection or Length Confidence,"
          "9: Target Length (0 or -1 if invalid),10-11+: Repeated Species,Confidence Pairs or Attributes")


# -- export ----------------------------------------------------------------------------------------

def _write_csv(path: Path, metadata: str, rows: list[list]) -> Path:
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        f.write(f'# metadata,{metadata}"exported_by: ""bpr"""\n')
        csv.writer(f).writerows(rows)
    temporary.replace(path)
    return path


def _box_rows(project: Project, video_id: str, run_id: int | None, min_conf: float) -> list[tuple]:
    """(track, frame, x1, y1, x2, y2, confidence, species): the labels (run None) or a run's detections."""
    if run_id is None:
        return project.conn.execute(
            "SELECT b.track_id, b.frame_index, b.x1, b.y1, b.x2, b.y2, 1.0, s.name FROM boxes b "
            "JOIN species s ON s.id = b.species_id WHERE b.video_id = ? ORDER BY b.frame_index, b.id",
            (video_id,)).fetchall()
    return project.conn.execute(
        "SELECT NULL, d.frame_index, d.x1, d.y1, d.x2, d.y2, d.confidence, s.name FROM detections d "
        "JOIN species s ON s.id = d.species_id WHERE d.run_id = ? AND d.video_id = ? "
        "AND d.confidence >= ? ORDER BY d.frame_index, d.id", (run_id, video_id, min_conf)).fetchall()


class _Tracks:
    """Keeps the labels' track ids and gives every box without one a new id, unique in its CSV."""

    def __init__(self, rows: list[tuple]):
        self.next = max((r[0] for r in rows if r[0] is not None), default=-1) + 1

    def __call__(self, track: int | None) -> int:
        if track is None:
            track, self.next = self.next, self.next + 1
        return track


def _csv_row(track: int, identifier: str, frame: int, box: tuple, conf: float, species: str) -> list:
    x1, y1, x2, y2 = box
    return [track, identifier, frame, f"{x1:.3f}", f"{y1:.3f}", f"{x2:.3f}", f"{y2:.3f}", f"{conf:.6g}", -1,
            species, f"{conf:.6g}"]


def export_viame(project: Project, out_dir: str | os.PathLike, run: str | None = None,
                 min_conf: float = 0.0, videos: list[str] | None = None) -> list[Path]:
    """Write VIAME CSVs of the labels (run None) or of a run's detections at >= min_conf.

    One CSV per video, and one per folder of images (DIVE opens a folder of images as one image
    sequence). Label rows keep their track ids (a new id for boxes without one) and confidence 1.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in project.videos() if videos is None or v["id"] in videos]
    run_id = project.run_id(run) if run else None
    written, taken = [], set()
    for video in (v for v in chosen if v["kind"] == "video"):
        rows = _box_rows(project, video["id"], run_id, min_conf)
        if not rows:
            continue
        identifier = Path(video["path"]).name if video["path"] else f"{video['id']}.mp4"
        tracks = _Tracks(rows)
        written.append(_write_csv(
            out_dir / f"{unique_name(_safe(video['id']), taken)}.csv", f"fps: {video['fps'] or 1:g},",
            [_csv_row(tracks(r[0]), identifier, r[1], r[2:6], r[6], r[7]) for r in rows]))

    for sequence in project.image_sequences(v["id"] for v in chosen):
        rows = []
        for image in sequence.images:
            name, frame = image_file_name(image), sequence.frames[image["id"]]
            rows += [(r[0], name, frame, r[2:6], r[6], r[7])
                     for r in _box_rows(project, image["id"], run_id, min_conf)]
        if not rows:
            continue
        rows.sort(key=lambda r: r[2])
        tracks = _Tracks(rows)
        path = out_dir / f"{unique_name(_safe(sequence.name), taken)}.csv"
        written.append(_write_csv(path, "", [_csv_row(tracks(r[0]), *r[1:]) for r in rows]))
    return written


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


# -- import ----------------------------------------------------------------------------------------

@dataclass
class _Row:
    line: int
    track: int
    name: str              # column 2: an image's file name, a video's name or a timestamp
    frame: int
    box: tuple[float, float, float, float]
    species: str
    repeat: int = 0        # earlier rows of this track on this frame (a track has one box a frame)

    def record(self, video_id: str, frame: int, box: tuple[float, float, float, float]) -> BoxRecord:
        """The row's box. A track's box on a frame is known by its track id, so that importing again
        adds nothing; a further row of the track on that frame is another box, kept without the id."""
        if self.repeat:
            return BoxRecord(video_id, frame, self.species, *box,
                             origin_key=f"viame:{self.track}#{self.repeat}", track_id=None)
        return BoxRecord(video_id, frame, self.species, *box, origin_key=f"viame:{self.track}",
                         track_id=self.track)


def _read_rows(path: Path) -> tuple[list[_Row], float | None, list[str]]:
    """Every box row of a VIAME CSV, checked, the fps its metadata gives, and warnings."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelFormatError(f"{path}: not a text CSV file") from None
    except OSError as e:
        raise LabelFormatError(f"{path}: cannot be read ({e.strerror})") from None
    rows, fps, untyped = [], None, []
    seen: dict[tuple[int, str, int], int] = {}  # (track, column 2, frame) -> rows so far
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            match = re.search(r'fps:\s*"*([0-9.]+)', line, re.IGNORECASE)  # DIVE: fps: 30, Fps: "30"
            if match:
                fps = float(match.group(1))
            continue
        try:
            columns = next(csv.reader([line]))
        except csv.Error as e:
            raise LabelFormatError(f"{path}:{number}: malformed CSV ({e})") from None
        if len(columns) < 9:
            raise LabelFormatError(f"{path}:{number}: expected at least 9 columns (track, image, frame, "
                                   f"4 box values, confidence, length), found {len(columns)}")
        try:
            track, frame = int(columns[0]), int(columns[2])
            x1, y1, x2, y2, _conf = (float(c) for c in columns[3:8])
        except ValueError:
            raise LabelFormatError(f"{path}:{number}: track, frame and box must be numbers") from None
        # As DIVE reads them: a pair is a name and a confidence, both there, from column 10 on, two at a
        # time; empty columns (DIVE's web writer pads rows) and "(kp) ..."-style attributes are not pairs.
        pairs = [(columns[i], columns[i + 1]) for i in range(9, len(columns) - 1, 2)
                 if columns[i].strip() and columns[i + 1].strip() and not columns[i].startswith("(")]
        try:
            ranked = sorted(((float(conf), name) for name, conf in pairs), reverse=True)
        except ValueError:
            raise LabelFormatError(f"{path}:{number}: a species confidence is not a number") from None
        if not ranked:  # VIAME's own writer leaves detections without a class so; DIVE reads them as unknown
            untyped.append(number)
            ranked = [(1.0, UNTYPED)]
        species = normalise_species(ranked[0][1])
        if not species:
            raise LabelFormatError(f"{path}:{number}: empty species name")
        if frame < 0:
            raise LabelFormatError(f"{path}:{number}: frame must not be negative")
        name = columns[1].strip()
        seen[track, name, frame] = repeat = seen.get((track, name, frame), -1) + 1
        rows.append(_Row(number, track, name, frame, (x1, y1, x2, y2), species, repeat))
    repeated = [r for r in rows if r.repeat]
    warnings = [f"{path}: {len(repeated)} row(s) repeat a track id on a frame (first: line {repeated[0].line}, "
                f"track {repeated[0].track}); kept as boxes of their own, without a track"] if repeated else []
    if untyped:
        warnings.append(f"{path}: {len(untyped)} row(s) name no species (first: line {untyped[0]}); imported as "
                        f"{UNTYPED!r}, as DIVE reads them")
    return rows, fps, warnings


def names_images(csv_path: str | os.PathLike) -> bool:
    """Whether a VIAME CSV belongs to an image folder: its first row names an image file in column 2."""
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            for columns in csv.reader(line for line in f if line.strip() and not line.startswith("#")):
                return len(columns) > 1 and is_image(columns[1])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # reading it as a video's CSV names the problem
    return False


def read_viame(path: str | os.PathLike, video_id: str | None = None, split: str | None = None,
               status: str = "none", width: int | None = None, height: int | None = None,
               replace: bool = False) -> ImportBatch:
    """One VIAME CSV as an ImportBatch for one video (``video_id``, else the CSV's file stem).

    Each row's species is its highest-confidence pair. Frames holding boxes get label ``status``
    ('none' by default: a CSV does not say whether every animal was boxed). With ``replace``, the
    CSV is the video's whole set of labels: the boxes it had are removed.
    """
    path = Path(path)
    vid = video_id or path.stem
    rows, fps, warnings = _read_rows(path)
    checker = BoxChecker(path)
    batch = ImportBatch(warnings=warnings)
    for row in rows:
        box = checker.check(f"line {row.line}", *row.box, width, height)
        if box is not None:
            batch.species.setdefault(row.species, None)
            batch.boxes.append(row.record(vid, row.frame, box))
    batch.videos.append(VideoRecord(vid, fps=fps, split=split, source=path.name, width=width, height=height))
    batch.replace = [vid] if replace else []
    if status != "none":
        batch.frames = [(vid, f, status) for f in sorted({r.frame for r in rows})]
    checker.report_to(batch)
    return batch


def read_viame_images(path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                      split: str | None = None, status: str = "none",
                      known: dict[Path, str] | None = None, taken: set[str] = frozenset(),
                      replace: bool = False) -> ImportBatch:
    """A VIAME CSV of an image folder as an ImportBatch of images.

    The folder is ``images_dir``; by default the CSV's own folder, or, if the first image named is not
    there, the one folder where the project holds an image of that name (a CSV exported from the
    project comes back without being told where its images are).

    Column 2 names each row's image; a row whose column 2 is blank takes the image at its frame number
    in the folder's natural order, as DIVE numbers them. An image the project already holds (``known``:
    resolved file path -> id) keeps its id, so detections made elsewhere land on the project's images;
    others are added as '<folder name>/<file stem>' (with a suffix if another file has that id in
    ``taken``). Images with a row are added, and they get label ``status``. With ``status`` 'full'
    the whole folder is fully labeled, as a val or test image sequence is, so its images without a
    row are added too, with no boxes: they hold no animal, and a detector is wrong to find one there.

    With ``replace``, the CSV is the folder's whole set of labels, as DIVE exports an image sequence:
    the boxes of every image the project holds in that folder are removed, those with no row too
    (their boxes were deleted); those are part of the import, and take ``split`` like the rest.
    """
    path = Path(path)
    rows, _, warnings = _read_rows(path)
    known, taken = known or {}, set(taken)
    folder = Path(images_dir) if images_dir else _images_folder(path, rows, known)
    if not folder.is_dir():
        raise LabelFormatError(f"{path}: the images folder {folder} does not exist")
    listing = None
    checker = BoxChecker(path)
    batch = ImportBatch(warnings=warnings)
    images: dict[str, tuple[str, int, int]] = {}  # file name -> id, width, height

    def add_image(name: str, width: int, height: int) -> None:
        file = folder / name
        vid = known.get(file.resolve())
        if vid is None:
            vid = unique_name(f"{folder.resolve().name}/{file.stem}", taken)
            batch.videos.append(VideoRecord(vid, kind="image", path=file, frame_count=1, width=width,
                                            height=height, split=split, source=path.name))
        else:  # the project's own image: its file and source stay as they are
            batch.videos.append(VideoRecord(vid, kind="image", split=split))
        images[name] = (vid, width, height)

    for row in rows:
        name = _file_name(row)
        if not name:
            listing = listing if listing is not None else folder_images(folder)
            if row.frame >= len(listing):
                raise LabelFormatError(f"{path}:{row.line}: frame {row.frame} has no image: {folder} holds "
                                       f"{len(listing)} images")
            name = listing[row.frame]
        elif not is_image(name):
            raise LabelFormatError(f"{path}:{row.line}: column 2 should name an image file, found {row.name!r}")
        if name not in images:
            try:
                add_image(name, *image_size(folder / name))
            except FileNotFoundError:
                raise LabelFormatError(f"{path}:{row.line}: image {name} is not in {folder} "
                                       "(give the folder holding the images)") from None
            except VideoError as e:
                raise LabelFormatError(str(e)) from None
        vid, width, height = images[name]
        box = checker.check(f"line {row.line}", *row.box, width, height)
        if box is not None:
            batch.species.setdefault(row.species, None)
            batch.boxes.append(row.record(vid, 0, box))
    if status == "full":  # a fully labeled sequence: its images without a row hold no animal
        for name in folder_images(folder):
            if name not in images:
                try:
                    add_image(name, *image_size(folder / name))
                except VideoError:
                    batch.leave_out(UNREADABLE, folder, name)
    if status != "none":
        batch.frames = [(vid, 0, status) for vid, _, _ in images.values()]
    if replace:
        here = folder.resolve()
        named = {vid for vid, _, _ in images.values()}
        emptied = sorted({vid for file, vid in known.items() if file.parent == here} - named)
        batch.videos += [VideoRecord(vid, kind="image", split=split) for vid in emptied]  # counted too
        batch.replace = sorted(named) + emptied
    checker.report_to(batch)
    return batch


def _file_name(row: _Row) -> str:
    """Column 2's file name, whatever folder (Windows' too) it is written with."""
    return PurePosixPath(row.name.replace("\\", "/")).name


def _images_folder(path: Path, rows: list[_Row], known: dict[Path, str]) -> Path:
    first = next((_file_name(r) for r in rows if r.name), None)
    if first is None or (path.parent / first).exists():
        return path.parent
    folders = {file.parent for file in known if file.name == first}
    return folders.pop() if len(folders) == 1 else path.parent


# -- the format, as the command and the app offer it ----------------------------------------------

@dataclass
class ViameImport:
    video_id: str | None = option(None, group="import", label="Video id",
                                  help="the video the rows belong to (default: the CSV's name)")
    images: str | None = option(None, group="import", label="Images folder",
                                help="the folder of images the rows belong to (default, when the rows name image "
                                     "files: the CSV's folder, or the project's folder of those images)")
    split: str | None = option(None, group="import", label="Split", choices=SPLITS,
                               help="the split of the video or image folder (default: as the project has it; "
                                    "none if new)")
    status: str = option("none", group="import", label="Label status", choices=LABEL_STATUSES,
                         help="label status for frames or images holding boxes; for an image folder, full also "
                              "brings its images without a box, as images with no animal")
    replace: bool = option(False, group="import", label="Replace the labels",
                           help="the CSV holds all the labels of its video or image folder (as DIVE exports them): "
                                "boxes there that it lacks are removed, so boxes moved or deleted in DIVE are "
                                "moved or deleted here. Default: add the CSV's boxes that are new")


def read_into(path: str | os.PathLike, options: ViameImport, project: Project | None) -> ImportBatch:
    """A VIAME CSV as an ImportBatch for ``project`` (None: a new one): into one video, its frame size
    (when the project has the video) clipping the boxes; or into the images of a folder, when
    ``options.images`` is given or, without a ``video_id``, the CSV's rows name image files."""
    if options.images is not None and options.video_id is not None:
        raise ValueError("a VIAME CSV goes into one video or into a folder's images, not both")
    if options.images is not None or (options.video_id is None and names_images(path)):
        videos = project.videos() if project is not None else []
        known = {project.resolve_path(v["path"]).resolve(): v["id"] for v in videos
                 if v["kind"] == "image" and v["path"]}
        return read_viame_images(path, options.images, options.split, options.status, known,
                                 {v["id"] for v in videos}, options.replace)
    vid = options.video_id or Path(path).stem
    try:
        video = project.video(vid) if project is not None else None
    except NotFoundError:
        video = None
    width, height = (video["width"], video["height"]) if video else (None, None)
    return read_viame(path, vid, options.split, options.status, width, height, options.replace)


def _write(project: Project, out, options, progress=None, cancel=None) -> list[str]:
    paths = export_viame(project, out, run=options.run, min_conf=options.min_conf, videos=options.video)
    return [f"wrote {len(paths)} VIAME CSV file(s) to {out} "
            f"({'detections of ' + options.run if options.run else 'labels'})"]


@dataclass
class ViameExport(DetectionsExport):
    video: list[str] | None = option(None, group="export", label="Videos", help="only these videos")


FORMAT = Format(
    name="viame", title="VIAME CSV", source="csv", source_help="the VIAME CSV file (from VIAME or DIVE)",
    file_filter="VIAME CSV (*.csv)",
    read=lambda source, options, project, progress: read_into(source, options, project),
    import_options=ViameImport,
    asks=(Ask("images", "Folder with the images the CSV names (cancel: beside the CSV, or where the project has "
                        "them)", when=names_images, start_beside_source=True),
          Ask("replace", "Add the CSV's new boxes to the labels, or replace the labels with the CSV's?",
              kind="choice", choices=(("Add new boxes", False), ("Replace labels", True)),
              detail="Add: boxes the project lacks are added; every box already here stays.\n"
                     "Replace: the CSV holds all the labels of its video or image folder, as DIVE exports them; "
                     "boxes moved or deleted in DIVE are moved or deleted here.")),
    write=_write, export_options=ViameExport, export_to_folder=True, export_title="VIAME CSV",
    export_help="VIAME CSV (opens in VIAME and DIVE), one file per video or image folder")
