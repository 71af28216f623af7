"""The demo project: DUSIA's layout, partial training labels, real files, built offline."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bpr.demo import VIDEOS
from bpr.data.media import VideoReader


def test_demo_is_a_dusia_project(demo_project):
    summary = demo_project.summary()
    assert summary["videos"] == 4 and summary["missing_videos"] == 0
    assert {s: v["videos"] for s, v in summary["splits"].items()} == {"train": 2, "val": 1, "test": 1}
    assert summary["frames"]["partial"] > 0 and summary["frames"]["full"] > 0
    assert len(summary["species"]) == 5
    # The train split list drops the leading zeros, as DUSIA's does; the import restores them.
    train_list = (demo_project.folder / "dusia" / "idd_lsts" / "train_auspec.txt").read_text().split()
    assert all(not vid.startswith("0") for vid in train_list)
    assert {v["id"] for v in demo_project.videos("train")} == {vid.zfill(20) for vid in train_list}


def test_training_frames_are_partially_labeled(demo_project):
    """Training videos keep tracks for only some animals; val/test videos for all of them."""
    def boxed_per_frame(split):
        video = demo_project.videos(split)[0]
        frames = demo_project.labeled_frames(video["id"])
        return np.mean([len(demo_project.boxes(video["id"], f["frame_index"])) for f in frames])

    xml = demo_project.folder / "dusia" / "cvat_annos" / f"{VIDEOS[0][0]}.xml"
    assert len(ET.parse(xml).getroot().findall("track")) > 0
    # Same animal density everywhere, 40 % of training animals unboxed.
    assert boxed_per_frame("train") < 0.8 * boxed_per_frame("val")


def test_demo_videos_match_their_annotations(demo_project):
    for video in demo_project.videos():
        with VideoReader(demo_project.resolve_path(video["path"])) as reader:
            assert reader.frame_count == video["frame_count"]
            assert (reader.width, reader.height) == (video["width"], video["height"])
            frame = reader.read(video["frame_count"] // 2)
            assert frame.std() > 10  # a textured seafloor, not a blank image


def test_the_truth_file_holds_every_animal_drawn_and_the_labels_are_its_boxed_ones(demo_project):
    """truth.json, beside the project: on every labeled frame its boxed animals are the labels (same
    species and box), and the others are the animals the training labels left out; never imported."""
    import json

    from bpr.demo import TRUTH_FILE, UNBOXED_FRACTION

    truth = json.loads((demo_project.folder / TRUTH_FILE).read_text())
    assert not (demo_project.folder / "dusia" / TRUTH_FILE).exists()  # not beside the annotations
    unboxed = boxed = 0
    for video in demo_project.videos():
        frames = truth["videos"][video["id"]]
        for labeled in demo_project.labeled_frames(video["id"]):
            animals = frames.get(str(labeled["frame_index"]), [])
            labels = sorted((b["species"], round(b["x1"], 2), round(b["y1"], 2), round(b["x2"], 2),
                             round(b["y2"], 2)) for b in demo_project.boxes(video["id"], labeled["frame_index"]))
            assert labels == sorted(tuple(a[:5]) for a in animals if a[5]), (video["id"], labeled)
            if video["split"] != "train":
                assert all(a[5] for a in animals)  # val and test are fully labeled
            unboxed += sum(not a[5] for a in animals)
            boxed += sum(a[5] for a in animals)
    assert 0.5 * UNBOXED_FRACTION < unboxed / (boxed + unboxed) < UNBOXED_FRACTION


@pytest.mark.slow
def test_the_main_job_reports_both_methods_against_the_truth(tmp_path):
    """With a recipe far smaller than the real one (CI's budget), the job trains plain and one round
    of self-training, and report.json holds every figure for both, measured."""
    import json

    from bpr.demo import METHOD, Recipe, run_pipeline

    said = []
    outputs = run_pipeline(tmp_path / "demo", say=said.append, recipe=Recipe(base_epochs=2, epochs=1, imgsz=96))
    report = json.loads(outputs["report"].read_text())
    keys = {"test_mAP50", "unboxed_recovered", "maxn_abs_error", "mean_count_abs_error"}
    if METHOD not in report["methods"]:  # a 2-epoch teacher may find nothing: then the report says so
        assert "self-training found nothing to add" in outputs["report table"].read_text()
    for scores in report["methods"].values():
        assert keys <= scores.keys() and scores["unboxed_animals"] > 0
        assert 0 <= scores["test_mAP50"] <= 1 and scores["maxn_abs_error"] >= 0
    assert report["seconds"] > 0 and outputs["report plot"].stat().st_size > 1000
    assert any(line.startswith("| plain |") for line in said[-len(outputs) - 1].splitlines())
