"""The real DUSIA annotations: exact counts, leading-zero ids, missing videos, idempotence, atomicity."""

import shutil
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from bpr.data.formats import LabelFormatError, import_dusia
from bpr.data.link import link_videos
from bpr.data.formats.dusia import read_dusia, video_id
from bpr.data.store import Project
from tests.conftest import shared


def independent_counts(root):
    """Box counts read with plain ElementTree, independently of the importer."""
    species, total = Counter(), 0
    for xml in (root / "cvat_annos").glob("*.xml"):
        for track in ET.parse(xml).getroot().iter("track"):
            n = sum(box.get("outside") != "1" for box in track.iter("box"))
            species[track.get("label").lower()] += n
            total += n
    return total, species


@pytest.fixture(scope="module")
def dusia_project(tmp_path_factory):
    root = shared("dusia_annotations")
    project = Project.create(tmp_path_factory.mktemp("dusia") / "p")
    report = import_dusia(project, root)
    yield project, report
    project.close()


def test_every_real_box_is_imported(dusia_project):
    project, report = dusia_project
    total, species = independent_counts(shared("dusia_annotations"))
    assert total == 140_460
    summary = project.summary()
    assert summary["boxes"] == report.boxes_added == 140_460
    assert {k.lower(): v for k, v in summary["species"].items()} == dict(species)
    assert len(summary["species"]) == 15
    assert summary["species"]["fragile pink urchin"] == 46_806
    assert summary["species"]["squat lobster"] == 34_294


def test_interpolated_boxes_keep_their_track(dusia_project):
    project, _ = dusia_project
    # Track 0 of 00002016080721095400 is a gray gorgonian boxed on frames 80..99 (keyframes 80, 90).
    rows = project.conn.execute(
        "SELECT frame_index, track_id, x1 FROM boxes WHERE video_id = '00002016080721095400' "
        "AND track_id = 0 ORDER BY frame_index").fetchall()
    assert [r[0] for r in rows][:20] == list(range(80, 100))
    assert rows[1][2] == pytest.approx(875.42)


def test_splits_with_leading_zeros_restored(dusia_project):
    project, _ = dusia_project
    splits = {v["id"]: v["split"] for v in project.videos()}
    assert len(splits) == 22 and all(len(vid) == 20 for vid in splits)
    # The train list spells it 02016080721095400.
    assert splits["00002016080721095400"] == "train"
    assert Counter(splits.values()) == {"train": 13, "val": 3, "test": 6}
    assert video_id("02016080721095400", "x") == "00002016080721095400"
    with pytest.raises(LabelFormatError, match="not a DUSIA video id"):
        video_id("2016-08-07", "list.txt:3")


def test_frames_and_missing_videos(dusia_project):
    project, report = dusia_project
    summary = project.summary()
    # A split's labeled frames are the entries of its frame list whose video has an annotation file.
    root = shared("dusia_annotations")
    annotated = {path.stem for path in (root / "cvat_annos").glob("*.xml") if path.stat().st_size}
    listed = {split: {line.strip() for line in (root / "idd_lsts" / name).read_text().splitlines() if line.strip()}
              for split, name in (("train", "trainkf_auspec_cvat_frames.txt"),
                                  ("val", "valfull_auspec_cvat_frames.txt"),
                                  ("test", "testfull_auspec_cvat_frames.txt"))}
    expected = {split: sum(entry.split("_")[0] in annotated for entry in entries) for split, entries in listed.items()}
    for split in ("train", "val", "test"):
        assert summary["splits"][split]["frames"] == expected[split] > 0
    assert summary["frames"] == {"partial": expected["train"], "full": expected["val"] + expected["test"]}
    assert summary["missing_videos"] == 22
    # Six listed videos have no XML upstream: recorded with their split, no frames, and said so.
    no_xml = [v for v in project.videos() if v["frame_count"] is None]
    assert len(no_xml) == 6
    assert any("6 video(s) in the split lists have no annotation file" in w for w in report.warnings)
    video = project.video("00002016080721161600")
    assert (video["frame_count"], video["width"], video["status"]) == (25016, 1920, "missing")


def test_reimport_adds_nothing(tmp_path):
    root = shared("dusia_annotations")
    with Project.create(tmp_path / "p") as project:
        import_dusia(project, root)
        before = project.summary()
        again = import_dusia(project, root)
        assert again.boxes_added == 0 and again.boxes_already_there == 140_460
        assert project.summary() == before


def test_a_failed_import_leaves_the_project_as_it_was(tmp_path):
    root = tmp_path / "dusia"
    shutil.copytree(shared("dusia_annotations"), root)
    with Project.create(tmp_path / "p") as project:
        project.conn.execute("INSERT INTO videos (id) VALUES ('mine')")
        project.add_box("mine", 0, "my species", (0, 0, 5, 5))
        before = project.summary()
        # The last file in import order turns bad: everything read before it must not land.
        last = sorted((root / "cvat_annos").glob("*.xml"))[-1]
        text = last.read_text()
        last.write_text(text.replace('label="squat lobster"', 'label="space lobster"', 1))
        with pytest.raises(LabelFormatError, match=rf'{last.name}: <track id="\d+">: unknown label "space lobster"'):
            import_dusia(project, root)
        assert project.summary() == before


def test_linking_a_video_later(tmp_path):
    root = shared("dusia_annotations")
    videos = tmp_path / "videos"
    videos.mkdir()
    # A stand-in file under a DUSIA name (the real videos are not available offline).
    shutil.copy(shared("videos", "coral_trimmed.mp4"), videos / "00002016080721095400.mp4")
    (videos / "00002016080721161600.mp4").write_bytes(b"not a video")
    with Project.create(tmp_path / "p") as project:
        import_dusia(project, root)
        result = link_videos(project, videos)
        assert result["linked"] == ["00002016080721095400"]
        assert result["unreadable"][0].startswith("00002016080721161600:")
        assert "120 frames, the annotations 11135" in result["frame_count_mismatch"][0]
        video = project.video("00002016080721095400")
        assert video["status"] == "ok" and video["frame_count"] == 11135  # the annotation's count kept
        assert project.video("00002016080721161600")["status"] == "unreadable"
        assert project.summary()["missing_videos"] == 20

        # Videos spread over two folders (two drives): one call, looking in each in turn.
        second = tmp_path / "second drive"
        second.mkdir()
        shutil.copy(shared("videos", "coral_trimmed.mp4"), second / "00002016080721161600.mp4")
        shutil.copy(shared("videos", "coral_trimmed.mp4"), second / "00002016080721421900.mp4")
        result = link_videos(project, [videos, second])
        assert result["linked"] == ["00002016080721421900"]  # the unreadable one is taken from the first
        with pytest.raises(FileNotFoundError, match="third: no such folder"):
            link_videos(project, [second, tmp_path / "third"])


def test_not_a_dusia_folder(tmp_path):
    with pytest.raises(LabelFormatError, match="not a DUSIA folder"):
        read_dusia(tmp_path)


def make_mini_dusia(root, frames_txt="00000000000000000001_0000003\n", split_txt="1\n"):
    (root / "cvat_annos").mkdir(parents=True)
    (root / "idd_lsts").mkdir()
    (root / "cvat_annos" / "00000000000000000001.xml").write_text(
        '<annotations><version>1.1</version><meta><task><name>00000000000000000001</name>'
        "<size>10</size><labels><label><name>Basket star</name></label></labels>"
        "<original_size><width>100</width><height>50</height></original_size></task></meta>"
        '<track id="0" label="basket star"><box frame="3" outside="0" keyframe="1" xtl="1" ytl="2" '
        'xbr="30" ybr="40"/><box frame="4" outside="1" keyframe="1" xtl="1" ytl="2" xbr="30" ybr="40"/>'
        "</track></annotations>")
    (root / "idd_lsts" / "train_auspec.txt").write_text(split_txt)
    (root / "idd_lsts" / "trainkf_auspec_cvat_frames.txt").write_text(frames_txt)


def test_mini_dataset_layout_under_data_folder(tmp_path):
    make_mini_dusia(tmp_path / "repo" / "data")
    batch = read_dusia(tmp_path / "repo")
    assert len(batch.boxes) == 1 and batch.boxes[0].species == "Basket star"
    assert batch.frames == [("00000000000000000001", 3, "partial")]
    assert batch.videos[0].split == "train"


@pytest.mark.parametrize("frames_txt, message", [
    ("00000000000000000001-0000003\n", r"trainkf_auspec_cvat_frames.txt:1: expected <video id>_<frame"),
    ("00000000000000000001_0000003\n00000000000000000001_0000099\n",
     r"trainkf_auspec_cvat_frames.txt:2: frame 99 is past the 10 frames"),
])
def test_malformed_frame_lists(tmp_path, frames_txt, message):
    make_mini_dusia(tmp_path, frames_txt=frames_txt)
    with pytest.raises(LabelFormatError, match=message):
        read_dusia(tmp_path)


def test_malformed_split_list(tmp_path):
    make_mini_dusia(tmp_path, split_txt="1\nvideo-two\n")
    with pytest.raises(LabelFormatError, match=r"train_auspec.txt:2: 'video-two' is not a DUSIA video id"):
        read_dusia(tmp_path)


def test_an_empty_annotation_file_records_its_video_with_no_annotations(tmp_path):
    """A clone of DUSIA's repository without its large files leaves some XMLs at zero bytes: the import
    goes on with the others, records those videos without annotations, and says which files."""
    make_mini_dusia(tmp_path, split_txt="1\n2\n",
                    frames_txt="00000000000000000001_0000003\n00000000000000000002_0000005\n")
    (tmp_path / "cvat_annos" / "00000000000000000002.xml").write_bytes(b"")
    batch = read_dusia(tmp_path)
    assert len(batch.boxes) == 1 and batch.frames == [("00000000000000000001", 3, "partial")]
    assert {v.id: v.split for v in batch.videos} == {"00000000000000000001": "train",
                                                      "00000000000000000002": "train"}
    assert [e.message() for e in batch.left_out] == [
        f"{tmp_path / 'cvat_annos'}: 1 empty annotation file (its video is recorded with no annotations) "
        "left out (00000000000000000002.xml)"]
    assert not any("have no annotation file" in w for w in batch.warnings)
