"""YOLO datasets: the real brittlestar set, and each kind of bad label file."""

import shutil

import pytest
from PIL import Image

from bpr.cli import main
from bpr.data.dataset import ExportError, export_yolo
from bpr.data.formats import LabelFormatError, import_yolo
from bpr.data.link import link_videos
from bpr.data.formats.yolo import read_yolo
from bpr.data.store import Project
from tests.conftest import shared


def count_label_lines(folder):
    return sum(len([l for l in p.read_text().splitlines() if l.strip()]) for p in folder.glob("*.txt"))


def test_brittlestar_imports_every_image_and_box(project):
    root = shared("brittlestar")
    report = import_yolo(project, root / "data.yaml")
    summary = project.summary()
    expected = {s: count_label_lines(root / s / "labels") for s in ("train", "val", "test")}
    assert {s: v["boxes"] for s, v in summary["splits"].items()} == expected
    assert {s: v["frames"] for s, v in summary["splits"].items()} == {"train": 800, "val": 200, "test": 150}
    assert summary["frames"] == {"partial": 800, "full": 350}
    assert summary["species"] == {"brittle star": sum(expected.values())}
    assert summary["missing_videos"] == 0 and report.videos_new == 1150
    video = project.videos("train")[0]
    assert video["kind"] == "image" and video["frame_count"] == 1 and video["id"].startswith("train/images/")
    assert import_yolo(project, root / "data.yaml").boxes_added == 0


def test_box_pixels_come_from_each_images_size(project):
    root = shared("brittlestar")
    import_yolo(project, root / "data.yaml")
    label = sorted((root / "train" / "labels").glob("*.txt"))[0]
    cls, cx, cy, w, h = map(float, label.read_text().split()[:5])
    image = root / "train" / "images" / (label.stem + ".jpg")
    width, height = Image.open(image).size
    [box] = project.boxes(f"train/images/{label.stem}", 0)[:1]
    assert box["x1"] == pytest.approx(max(0, (cx - w / 2) * width), abs=1e-6)
    assert box["y2"] == pytest.approx(min(height, (cy + h / 2) * height), abs=1e-6)


def make_dataset(tmp_path, label_text, names="[urchin, star]"):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "labels").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(tmp_path / "train" / "images" / "a.jpg")
    (tmp_path / "train" / "labels" / "a.txt").write_text(label_text)
    (tmp_path / "data.yaml").write_text(f"path: .\ntrain: train/images\nnames: {names}\n")
    return tmp_path / "data.yaml"


def test_a_small_dataset(tmp_path):
    batch = read_yolo(make_dataset(tmp_path, "1 0.5 0.5 0.5 0.5\n\n0 0.1 0.1 0.1 0.1\n"))
    assert [(b.species, b.x1, b.y1, b.x2, b.y2) for b in batch.boxes] == [
        ("star", 50, 25, 150, 75), ("urchin", pytest.approx(10), pytest.approx(5), pytest.approx(30),
                                    pytest.approx(15))]
    assert batch.frames == [("train/images/a", 0, "partial")]


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2\n", r"a.txt:1: expected 5 columns .* found 4"),
    ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.9\n", r"a.txt:2: expected 5 columns .* found 6"),
    ("2 0.5 0.5 0.2 0.2\n", r"a.txt:1: class 2 is out of range .* 0..1"),
    ("-1 0.5 0.5 0.2 0.2\n", r"a.txt:1: class -1 is out of range"),
    ("0 0.5 zero 0.2 0.2\n", r"a.txt:1: not numbers"),
])
def test_bad_label_lines(tmp_path, text, message):
    with pytest.raises(LabelFormatError, match=message):
        read_yolo(make_dataset(tmp_path, text))


@pytest.mark.parametrize("text, left_out", [
    ("0 0.5 0.5 0.0 0.2\n1 0.5 0.5 0.2 0.2\n", "box with no area (x2 <= x1 or y2 <= y1) left out (line 1)"),
    ("1 0.5 0.5 0.2 0.2\n0 0.5 0.5 -0.2 0.2\n", "box with no area (x2 <= x1 or y2 <= y1) left out (line 2)"),
    ("0 1.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n", "box wholly outside the frame left out (line 1)"),
])
def test_boxes_with_no_area_or_outside_the_frame_are_left_out(tmp_path, text, left_out):
    """A public underwater YOLO dataset holds 2 zero-area boxes among 4,817, and ultralytics trains on it
    (dropping them as it augments): the import leaves out those boxes alone, naming file and line."""
    batch = read_yolo(make_dataset(tmp_path, text))
    assert [b.species for b in batch.boxes] == ["star"]
    label = tmp_path / "train" / "labels" / "a.txt"
    assert [e.message() for e in batch.left_out] == [f"{label}: 1 {left_out}"]


def test_what_is_left_out_of_many_files_is_one_line(tmp_path):
    """Boxes with no area in several label files: one line naming the first few files and lines, then
    the total, not a line a file."""
    make_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    for i in range(4):
        Image.new("RGB", (200, 100)).save(tmp_path / "train" / "images" / f"b{i}.jpg")
        (tmp_path / "train" / "labels" / f"b{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0\n")
    [left_out] = read_yolo(tmp_path / "data.yaml").left_out
    labels = tmp_path / "train" / "labels"
    assert left_out.message() == (
        f"4 boxes with no area (x2 <= x1 or y2 <= y1) left out, in 4 files ({labels / 'b0.txt'} line 2, "
        f"{labels / 'b1.txt'} line 2, {labels / 'b2.txt'} line 2, … 4 in all)")


def test_a_segmentation_datasets_outlines_become_their_boxes(tmp_path):
    """Roboflow exports segmentation datasets as YOLO rows of a class and a polygon's points; ultralytics
    trains a detector on their boxes, and so do these."""
    batch = read_yolo(make_dataset(tmp_path, "1 0.2 0.2 0.6 0.3 0.4 0.8\n0 0.5 0.5 0.2 0.2\n"))
    assert [(b.species, b.x1, b.y1, b.x2, b.y2) for b in batch.boxes] == [
        ("star", pytest.approx(40), pytest.approx(20), pytest.approx(120), pytest.approx(80)),
        ("urchin", pytest.approx(80), pytest.approx(40), pytest.approx(120), pytest.approx(60))]


def test_a_roboflow_export(tmp_path):
    """Roboflow writes `train: ../train/images` in a data.yaml beside train/, `nc` with or without
    names, and sometimes `validation:`: ultralytics retries the path without ../, reads `validation`
    as val, and names unnamed classes class_0, class_1, ..."""
    make_dataset(tmp_path, "1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "valid" / "images").mkdir(parents=True)
    (tmp_path / "valid" / "labels").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(tmp_path / "valid" / "images" / "b.jpg")
    (tmp_path / "valid" / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("train: ../train/images\nvalidation: ../valid/images\nnc: 2\n")
    batch = read_yolo(tmp_path / "data.yaml")
    assert sorted((v.id, v.split) for v in batch.videos) == [("train/images/a", "train"), ("valid/images/b", "val")]
    assert sorted(b.species for b in batch.boxes) == ["class_0", "class_1"]
    (tmp_path / "data.yaml").write_text("train: ../train/images\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(LabelFormatError, match="nc is 3 but names lists 2 classes"):
        read_yolo(tmp_path / "data.yaml")


def test_an_exif_turned_photo_takes_its_turned_size(tmp_path):
    """A camera's JPEG stored 200x100 with EXIF orientation 6 (turn a quarter) is decoded 100x200 by
    OpenCV, as ultralytics trains on it; its labels are on the turned picture."""
    data_yaml = make_dataset(tmp_path, "0 0.5 0.5 0.5 0.5\n")
    image = Image.new("RGB", (200, 100))
    exif = image.getexif()
    exif[274] = 6
    image.save(tmp_path / "train" / "images" / "a.jpg", exif=exif)
    batch = read_yolo(data_yaml)
    assert (batch.videos[0].width, batch.videos[0].height) == (100, 200)
    assert (batch.boxes[0].x1, batch.boxes[0].y1, batch.boxes[0].x2, batch.boxes[0].y2) == (25, 50, 75, 150)
    from bpr.data.media import probe
    assert (probe(tmp_path / "train" / "images" / "a.jpg")["width"], ) == (100, )


def test_boxes_reaching_outside_are_clipped_with_a_warning(tmp_path):
    batch = read_yolo(make_dataset(tmp_path, "0 0.95 0.5 0.2 0.2\n"))
    assert batch.boxes[0].x2 == 200
    assert "1 box(es) reached outside the frame and were clipped" in batch.warnings[0]


@pytest.mark.parametrize("yaml_text, message", [
    ("train: [unclosed\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("train: train/images\n", "'names' must list the class names"),
    ("train: nowhere/images\nnames: [a]\n", "neither a folder nor a .txt list"),
    ("names: [a]\n", "names no train, val or test images"),
])
def test_bad_data_yaml(tmp_path, yaml_text, message):
    make_dataset(tmp_path, "")
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(LabelFormatError, match=message):
        read_yolo(tmp_path / "data.yaml")


def test_an_image_in_two_splits_is_refused_and_one_listed_twice_counts_once(tmp_path):
    data = make_dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    data.write_text("path: .\ntrain: train/images\nval: train/images\nnames: [urchin, star]\n")
    with pytest.raises(LabelFormatError, match=r"val lists .*a.jpg, which train lists again; give each split"):
        read_yolo(data)
    Image.new("RGB", (200, 100)).save(tmp_path / "train" / "images" / "a.png")  # same id, train/images/a
    data.write_text("path: .\ntrain: train/images\nnames: [urchin, star]\n")
    with pytest.raises(LabelFormatError, match=r"train lists .*a.png, which train lists as a.jpg, the same "
                                               r"image id train/images/a"):
        read_yolo(data)
    (tmp_path / "train" / "images" / "a.png").unlink()
    (tmp_path / "list.txt").write_text("train/images/a.jpg\ntrain/images/a.jpg\n")
    data.write_text("path: .\ntrain: list.txt\nnames: [urchin, star]\n")
    batch = read_yolo(data)
    assert len(batch.videos) == len(batch.boxes) == 1


def test_a_bad_file_late_in_the_set_imports_nothing(tmp_path, project):
    root = tmp_path / "bs"
    shutil.copytree(shared("brittlestar"), root)
    last = sorted((root / "test" / "labels").glob("*.txt"))[-1]
    last.write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(LabelFormatError, match=last.name):
        import_yolo(project, root / "data.yaml")
    assert project.summary()["boxes"] == 0 and project.videos() == []


def test_a_moved_image_set_is_found_again(tmp_path, project, capsys):
    """The images' folder moved (another drive, another machine): export says how to find it, and
    link-videos given the set's new root finds each image under its id's folder."""
    import_yolo(project, make_dataset(tmp_path / "data", "0 0.5 0.5 0.5 0.5\n"))
    shutil.move(tmp_path / "data", tmp_path / "moved")
    assert main(["info", str(project.folder)]) == 0
    assert "images: 1 (1 missing, 0 unreadable)" in capsys.readouterr().out
    with pytest.raises(ExportError, match="1 labeled frame.* without a readable file .*bpr link-videos"):
        export_yolo(project, tmp_path / "export")
    assert not (tmp_path / "export").exists()  # no half export left to refuse the next one
    assert link_videos(project, tmp_path)["still_missing"] == ["train/images/a"]  # not under this folder
    project.close()
    assert main(["link-videos", str(project.folder), str(tmp_path / "moved")]) == 0
    assert "linked 1 image; 0 still missing" in capsys.readouterr().out
    with Project.open(project.folder) as reopened:
        assert reopened.resolve_path(reopened.video("train/images/a")["path"]) == tmp_path / "moved/train/images/a.jpg"
        assert export_yolo(reopened, tmp_path / "export").boxes["train"] == 1
        assert link_videos(reopened, tmp_path / "moved")["linked_images"] == []  # found already
