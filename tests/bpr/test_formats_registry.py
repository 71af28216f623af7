"""The format registry: one entry makes a format an import and an export of the command (and the app's
menus, tests/app/test_browse.py); every import reads everything before it touches the project."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from bpr.cli import build_parser, main
from bpr.config import option
from bpr.data.formats.common import BoxRecord, Format, ImportBatch, LabelFormatError, VideoRecord
from bpr.data.registry import FORMATS, import_source, register


@dataclass
class ToyImport:
    status: str = option("partial", group="import", label="Label status", choices=("partial", "full"),
                         help="label status of the toy's frame")


def read_toy(source: Path, options: ToyImport, project, progress) -> ImportBatch:
    """One line per box: species x1 y1 x2 y2, all on frame 0 of a 100x100 video named after the file."""
    batch = ImportBatch(videos=[VideoRecord(source.stem, width=100, height=100, frame_count=1)])
    for number, line in enumerate(source.read_text().splitlines(), 1):
        species, *corners = line.split()
        try:
            x1, y1, x2, y2 = map(float, corners)
        except ValueError:
            raise LabelFormatError(f"{source}:{number}: expected species x1 y1 x2 y2") from None
        batch.species.setdefault(species, None)
        batch.boxes.append(BoxRecord(source.stem, 0, species, x1, y1, x2, y2, origin_key=f"toy:{number}"))
    batch.frames = [(source.stem, 0, options.status)]
    return batch


def write_toy(project, out, options, progress=None, cancel=None) -> list[str]:
    lines = [f"{b['species']} {b['x1']:g} {b['y1']:g} {b['x2']:g} {b['y2']:g}"
             for v in project.videos() for b in project.boxes(v["id"], 0)]
    Path(out).write_text("\n".join(lines) + "\n")
    return [f"wrote {len(lines)} boxes to {out}"]


@dataclass
class ToyExport:
    pass


TOY = Format(name="toy", title="Toy boxes", source="txt", source_help="a toy box list", file_filter="Toy (*.txt)",
             read=read_toy, import_options=ToyImport, write=write_toy, export_options=ToyExport,
             export_title="Toy boxes", export_help="a toy box list", export_file="boxes.txt")


@pytest.fixture
def toy_format():
    yield register(TOY)
    FORMATS.pop("toy", None)


def test_a_registered_format_is_an_import_and_an_export_of_the_command(toy_format, tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(["import", "toy", "a.txt", "--project", "p", "--status", "full"])
    assert (args.format, args.source, args.status) == ("toy", "a.txt", "full")
    source = tmp_path / "clip.txt"
    source.write_text("urchin 1 2 30 40\nstar 5 5 9 9\n")
    project = tmp_path / "p"
    assert main(["import", "toy", str(source), "--project", str(project), "--status", "full"]) == 0
    assert "boxes: 2 added" in capsys.readouterr().out
    out = tmp_path / "out.txt"
    assert main(["export", "toy", str(project), str(out)]) == 0
    assert out.read_text() == "urchin 1 2 30 40\nstar 5 5 9 9\n"
    assert "wrote 2 boxes" in capsys.readouterr().out


@pytest.mark.parametrize("format", ["dusia", "cvat", "yolo", "coco", "viame", "toy"])
def test_a_refused_import_leaves_no_new_project_folder(toy_format, tmp_path, format):
    source = tmp_path / ("source" if FORMATS[format].source_is_folder else "source.txt")
    if FORMATS[format].source_is_folder:
        source.mkdir()
    else:
        source.write_text("not what any format reads\n")
    with pytest.raises((LabelFormatError, ValueError, OSError)):
        import_source(tmp_path / "new-project", format, source)
    assert not (tmp_path / "new-project").exists()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        import_source(tmp_path / "new-project", format, tmp_path / "nowhere")
    assert not (tmp_path / "new-project").exists()
