"""The demo project: DUSIA's layout, partial training labels, real files, built offline."""

import xml.etree.ElementTree as ET

import numpy as np

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
