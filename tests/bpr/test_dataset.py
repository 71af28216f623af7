"""Training-set export, read back through ultralytics' own dataset class."""

import json
import os

import numpy as np
import pytest

from bpr.data.dataset import ExportError, export_yolo, frame_cache_path
from bpr.data.formats import import_yolo
from tests.conftest import shared


def read_with_ultralytics(data_yaml, split):
    """{image file name: sorted (class, x, y, w, h) rows} as ultralytics' YOLODataset reads them."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    dataset = YOLODataset(img_path=data[split], data=data, task="detect", augment=False, imgsz=320)
    out = {}
    for label in dataset.labels:
        rows = np.concatenate([label["cls"], label["bboxes"]], axis=1) if len(label["cls"]) else np.zeros((0, 5))
        out[os.path.basename(label["im_file"])] = rows
    return out


def assert_same_labels(got, expected):
    """Same images, and per image the same boxes (float32 in ultralytics, so within 1e-5)."""
    assert sorted(got) == sorted(expected)
    for name, rows in expected.items():
        a = np.asarray(got[name], np.float64).reshape(-1, 5)
        b = np.asarray(rows, np.float64).reshape(-1, 5)
        a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5), name


def store_rows(project, names, split, hidden=frozenset()):
    """What the labels should be, computed from the store directly."""
    class_of = {name: i for i, name in enumerate(names)}
    statuses = ("partial", "full") if split == "train" else ("full",)
    out = {}
    for video in project.videos(split):
        for frame in project.labeled_frames(video["id"]):
            if frame["label_status"] not in statuses:
                continue
            w, h = video["width"], video["height"]
            rows = [(class_of[b["species"]], (b["x1"] + b["x2"]) / 2 / w, (b["y1"] + b["y2"]) / 2 / h,
                     (b["x2"] - b["x1"]) / w, (b["y2"] - b["y1"]) / h)
                    for b in project.boxes(video["id"], frame["frame_index"]) if b["id"] not in hidden]
            stem = video["id"].replace("/", "__")
            suffix = ".jpg" if video["kind"] == "video" else os.path.splitext(video["path"])[1].lower()
            out[f"{stem}_{frame['frame_index']:07d}{suffix}"] = rows
    return out


def test_demo_export_is_read_by_ultralytics_exactly(demo_project, tmp_path, ultralytics_offline):
    result = export_yolo(demo_project, tmp_path / "export")
    for split in ("train", "val", "test"):
        expected = store_rows(demo_project, result.names, split)
        got = read_with_ultralytics(result.data_yaml, split)
        assert_same_labels(got, expected)
        assert sum(map(len, got.values())) == result.boxes[split] > 0
    # Frames cut from video land in the project's cache once and are hard-linked into the export.
    image = next((tmp_path / "export" / "train" / "images").iterdir())
    vid, frame = image.stem.rsplit("_", 1)
    cached = frame_cache_path(demo_project, vid, int(frame))
    assert os.path.samefile(image, cached) and not image.is_symlink()


def test_hidden_boxes_do_not_leak_back(demo_project, tmp_path, ultralytics_offline):
    full = export_yolo(demo_project, tmp_path / "full")
    half = export_yolo(demo_project, tmp_path / "half", hide_fraction=0.5, seed=3)
    manifest = json.loads((tmp_path / "half" / "export.json").read_text())
    hidden = set(manifest["hidden_box_ids"])
    assert half.hidden_boxes == len(hidden) == round(0.5 * full.boxes["train"])
    got = read_with_ultralytics(half.data_yaml, "train")
    assert_same_labels(got, store_rows(demo_project, half.names, "train", hidden))
    assert sum(map(len, got.values())) == full.boxes["train"] - len(hidden)
    # val/test are never hidden
    assert half.boxes["val"] == full.boxes["val"]
    # the same seed hides the same boxes; another seed others
    again = export_yolo(demo_project, tmp_path / "half", hide_fraction=0.5, seed=3)
    assert json.loads((tmp_path / "half" / "export.json").read_text())["hidden_box_ids"] == sorted(hidden)
    assert again.hidden_boxes == half.hidden_boxes
    other = export_yolo(demo_project, tmp_path / "other", hide_fraction=0.5, seed=4)
    assert json.loads((tmp_path / "other" / "export.json").read_text())["hidden_box_ids"] != sorted(hidden)
    # the label files' checksum tells the same training labels from others
    assert again.labels_sha256["train"] == half.labels_sha256["train"] != other.labels_sha256["train"]
    assert half.labels_sha256["train"] != full.labels_sha256["train"]
    assert half.labels_sha256["val"] == other.labels_sha256["val"] == full.labels_sha256["val"]
    assert json.loads((tmp_path / "other" / "export.json").read_text())["labels_sha256"] == other.labels_sha256


def test_the_oracle_writes_exactly_the_hidden_boxes_of_partial_frames_as_ignore_regions(demo_project, tmp_path):
    """hidden_as_ignore (the experiment's hidden-ignored): the labels stay those of the plain partial
    export; each partially labeled training frame's hidden boxes, and nothing else, become its ignore
    regions (a full frame's are not: the ignore band applies to partial frames only)."""
    from bpr.data.dataset import IGNORE_FOLDER

    video = demo_project.videos("train")[0]
    demo_project.set_frame_status(video["id"], demo_project.labeled_frames(video["id"])[0]["frame_index"], "full")
    half = export_yolo(demo_project, tmp_path / "half", hide_fraction=0.5, seed=3)
    oracle = export_yolo(demo_project, tmp_path / "oracle", hide_fraction=0.5, seed=3, hidden_as_ignore=True)
    assert oracle.labels_sha256 == half.labels_sha256 and not (tmp_path / "half" / "train" / IGNORE_FOLDER).exists()
    manifest = json.loads((tmp_path / "oracle" / "export.json").read_text())
    assert manifest["hidden_as_ignore"] and manifest["hidden_box_ids"] == sorted(
        json.loads((tmp_path / "half" / "export.json").read_text())["hidden_box_ids"])
    hidden = set(manifest["hidden_box_ids"])
    expected = {}
    for name, rows in store_rows(demo_project, oracle.names, "train").items():
        kept = store_rows(demo_project, oracle.names, "train", hidden)[name]
        gone = [(0, *row[1:]) for row in rows if row not in kept]
        if gone and name in oracle.partial_images:
            expected[name] = gone
    assert expected and len(oracle.partial_images) < oracle.images["train"]  # both kinds of frame
    written = {}
    for file in (tmp_path / "oracle" / "train" / IGNORE_FOLDER).iterdir():
        written[file.stem] = np.loadtxt(file, ndmin=2).tolist()
    assert sorted(written) == sorted(os.path.splitext(name)[0] for name in expected)
    for name, rows in expected.items():
        assert np.allclose(sorted(written[os.path.splitext(name)[0]]), sorted(rows), atol=1e-6), name
    assert oracle.ignore_regions == sum(map(len, expected.values()))
    assert oracle.ignore_regions < len(hidden)  # the full frames' hidden boxes are left out
    # a run's settings carry it to its training set
    from bpr.data.dataset import export_training_set
    from bpr.learn.training import TrainConfig

    config = TrainConfig(hide_fraction=0.5, seed=3, hidden_as_ignore=True)
    assert export_training_set(demo_project, tmp_path / "run", config).ignore_regions == oracle.ignore_regions


def test_keeping_one_box_per_image_hides_the_rest(demo_project, tmp_path, ultralytics_offline):
    """The sparse-annotation literature's extreme split: each training image keeps one of its boxes,
    chosen with the seed; val/test keep all of theirs."""
    full = export_yolo(demo_project, tmp_path / "full")
    one = export_yolo(demo_project, tmp_path / "one", keep_per_image=1, seed=3)
    hidden = set(json.loads((tmp_path / "one" / "export.json").read_text())["hidden_box_ids"])
    before = read_with_ultralytics(full.data_yaml, "train")
    got = read_with_ultralytics(one.data_yaml, "train")
    assert_same_labels(got, store_rows(demo_project, one.names, "train", hidden))
    assert {name: len(rows) for name, rows in got.items() if len(rows)} == \
        {name: 1 for name, rows in before.items() if len(rows)}
    assert one.hidden_boxes == len(hidden) == full.boxes["train"] - len([r for r in before.values() if len(r)])
    assert one.boxes["val"] == full.boxes["val"] and one.boxes["test"] == full.boxes["test"]
    export_yolo(demo_project, tmp_path / "other", keep_per_image=1, seed=4)
    assert json.loads((tmp_path / "other" / "export.json").read_text())["hidden_box_ids"] != sorted(hidden)
    two = export_yolo(demo_project, tmp_path / "two", keep_per_image=2, seed=3)
    assert two.boxes["train"] == sum(min(2, len(rows)) for rows in before.values())
    with pytest.raises(ValueError, match="use one of them"):
        export_yolo(demo_project, tmp_path / "both", hide_fraction=0.5, keep_per_image=1)


def test_the_same_data_imported_again_hides_the_same_boxes(tmp_path):
    """A sweep carried to another machine rebuilds its project from the data.yaml: each seed must
    hide the same boxes there, or its runs no longer pair with those trained before."""
    from PIL import Image

    from bpr.data.store import Project

    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "images").mkdir(parents=True)
        (data / split / "labels").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (64, 48)).save(data / split / "images" / f"{i}.jpg")
            (data / split / "labels" / f"{i}.txt").write_text(
                "".join(f"0 {0.1 + 0.2 * k:.1f} 0.5 0.1 0.1\n" for k in range(i + 2)))
    (data / "data.yaml").write_text("path: .\ntrain: train/images\nval: val/images\nnames: [star]\n")
    checksums = []
    for copy in ("first", "second"):
        with Project.open(tmp_path / copy, create=True) as project:
            import_yolo(project, data / "data.yaml")
            checksums.append([export_yolo(project, tmp_path / f"{copy}-seed{seed}", hide_fraction=0.5,
                                          seed=seed).labels_sha256["train"] for seed in (1, 2)])
    assert checksums[0] == checksums[1]
    assert checksums[0][0] != checksums[0][1]


def test_image_dataset_export_hides_boxes_from_the_original_labels(project, tmp_path, ultralytics_offline):
    """The brittlestar images are hard-linked; ultralytics must read our labels, not those beside them."""
    root = shared("brittlestar")
    import_yolo(project, root / "data.yaml")
    result = export_yolo(project, tmp_path / "export", hide_fraction=0.5, seed=0)
    original = sum(len(p.read_text().split()) // 5 for p in (root / "train" / "labels").glob("*.txt"))
    assert original == 2892
    got = read_with_ultralytics(result.data_yaml, "train")
    assert len(got) == 800
    assert sum(map(len, got.values())) == result.boxes["train"] == original - round(0.5 * original)
    image = tmp_path / "export" / "train" / "images" / next(iter(got))
    assert not image.is_symlink() and image.resolve().parent == (tmp_path / "export" / "train" / "images")


def test_species_selection_and_errors(demo_project, tmp_path):
    result = export_yolo(demo_project, tmp_path / "e", species=["basket star", "Yellow gorgonian"])
    assert result.names == ["Basket star", "Yellow gorgonian"]
    with pytest.raises(ExportError, match="unknown species"):
        export_yolo(demo_project, tmp_path / "e2", species=["kraken"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty and is not an earlier export"):
        export_yolo(demo_project, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_cancelled_export_leaves_nothing_half_written(demo_project, tmp_path):
    """A half-written folder, without the manifest of a finished export, would refuse the next try."""
    export_yolo(demo_project, tmp_path / "e")
    calls = []
    with pytest.raises(ExportError, match="export cancelled"):
        export_yolo(demo_project, tmp_path / "e", cancel=lambda: calls.append(1) or len(calls) > 5)
    assert not (tmp_path / "e").exists()
    assert export_yolo(demo_project, tmp_path / "e").images["train"] > 0


def test_frames_of_missing_videos_are_left_out_with_a_warning(demo_project, tmp_path):
    vid = demo_project.videos("train")[0]["id"]
    demo_project.set_video_file(vid, None, None, "missing", "moved away")
    result = export_yolo(demo_project, tmp_path / "e")
    assert result.skipped_frames == {vid: 29}
    assert "29 labeled frame(s) of 1 video without a readable file" in result.warnings[0]


def test_protocols_choose_the_frames_of_each_split(demo_project, tmp_path):
    """dusia: val/test take only full frames; all-labeled: partial ones too."""
    vid = demo_project.videos("val")[0]["id"]
    demo_project.set_frame_status(vid, 3, "partial")
    dusia = export_yolo(demo_project, tmp_path / "d")
    every = export_yolo(demo_project, tmp_path / "a", protocol="all-labeled")
    assert every.images["val"] == dusia.images["val"] + 1
    assert every.images["train"] == dusia.images["train"]
    with pytest.raises(ValueError, match="protocol"):
        export_yolo(demo_project, tmp_path / "x", protocol="loose")
