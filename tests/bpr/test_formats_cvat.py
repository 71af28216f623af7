"""CVAT for video 1.1: what is imported, and a clear message for each kind of bad input."""

import pytest

from bpr.data.formats import LabelFormatError, import_cvat
from bpr.data.formats.cvat import parse_cvat_video, read_cvat
from bpr.data.registry import import_source

HEAD = ('<annotations><version>1.1</version><meta><task><name>clip</name><size>100</size>'
        "<labels><label><name>Squat lobster</name></label><label><name>urchin</name></label></labels>"
        "<original_size><width>640</width><height>360</height></original_size></task>"
        "<source>clip.mp4</source></meta>")


def write(tmp_path, body, head=HEAD):
    path = tmp_path / "clip.xml"
    path.write_text(head + body + "</annotations>")
    return path


def box(frame, x1=10, y1=10, x2=50, y2=40, outside=0, keyframe=1):
    return (f'<box frame="{frame}" outside="{outside}" occluded="0" keyframe="{keyframe}" '
            f'xtl="{x1}" ytl="{y1}" xbr="{x2}" ybr="{y2}" z_order="0"></box>')


def test_tracks_become_boxes_outside_boxes_are_skipped(tmp_path, project):
    path = write(tmp_path, '<track id="7" label="squat lobster">' + box(5) + box(6, keyframe=0)
                 + box(7, outside=1) + "</track>")
    report = import_cvat(project, path, split="train")
    assert report.boxes_added == 2
    rows = project.boxes("clip", 6)
    assert rows[0]["track_id"] == 7 and rows[0]["species"] == "Squat lobster"
    assert project.boxes("clip", 7) == []
    # Only the frame with a keyframe box is a labeled frame.
    assert project.labeled_frames("clip") == [{"frame_index": 5, "label_status": "partial"}]
    assert project.video("clip")["split"] == "train"
    assert import_cvat(project, path).boxes_added == 0


def test_malformed_xml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<annotations>\n<meta>\n<task></meta>\n</annotations>")
    with pytest.raises(LabelFormatError, match=r"bad.xml: line 3, column \d+: malformed XML"):
        parse_cvat_video(path)


def test_unknown_label(tmp_path):
    path = write(tmp_path, '<track id="3" label="sea pig">' + box(1) + "</track>")
    with pytest.raises(LabelFormatError, match=r'clip.xml: <track id="3">: unknown label "sea pig"'):
        parse_cvat_video(path)


@pytest.mark.parametrize("coords", [(50, 10, 50, 40), (10, 40, 50, 10), (60, 10, 50, 40)])
def test_a_box_with_no_area_is_left_out_and_named(tmp_path, project, coords):
    """Zero width or height, or corners the wrong way round: CVAT's own importer does not put them in
    order, so they are left out, counted, and named by their element; a strict import refuses them."""
    path = write(tmp_path, '<track id="1" label="urchin">' + box(12, *coords) + box(13) + "</track>")
    batch = read_cvat(path)
    assert [b.frame_index for b in batch.boxes] == [13]
    [left_out] = batch.left_out
    assert left_out.message() == (f'{path}: 1 box with no area (x2 <= x1 or y2 <= y1) left out '
                                  '(<track id="1"> <box frame="12">)')
    refused = r'clip.xml: <track id="1"> <box frame="12">: box with no area .* a strict import refuses'
    with pytest.raises(LabelFormatError, match=refused):
        import_source(project.folder, "cvat", path, strict=True)
    assert project.summary()["boxes"] == 0


def test_box_outside_the_frame_is_clipped_and_counted(tmp_path):
    path = write(tmp_path, '<track id="1" label="urchin">' + box(1, -5, 10, 50, 40)
                 + box(2, 600, 300, 700, 400) + box(3) + "</track>")
    batch = read_cvat(path)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in batch.boxes[:2]] == [(0, 10, 50, 40), (600, 300, 640, 360)]
    assert batch.warnings == [f"{path}: 2 box(es) reached outside the frame and were clipped to it"]


def test_a_box_wholly_outside_the_frame_is_left_out(tmp_path):
    path = write(tmp_path, '<track id="1" label="urchin">' + box(1, 700, 10, 800, 40) + box(2) + "</track>")
    batch = read_cvat(path)
    assert [b.frame_index for b in batch.boxes] == [2]
    assert [e.message() for e in batch.left_out] == [
        f'{path}: 1 box wholly outside the frame left out (<track id="1"> <box frame="1">)']


@pytest.mark.parametrize("body, message", [
    ('<track id="1" label="urchin"><box frame="x" outside="0" xtl="1" ytl="1" xbr="2" ybr="2"/></track>',
     "frame must be a non-negative integer"),
    ('<track id="1" label="urchin"><box frame="1" outside="0" xtl="a" ytl="1" xbr="2" ybr="2"/></track>',
     "must be numbers"),
    ('<track id="1" label="urchin">' + box(100) + "</track>", r"frame is outside the task's frames \(0 to 99\)"),
    ('<track label="urchin">' + box(1) + "</track>", "a track needs an integer id"),
    ('<track id="1" label="urchin">' + box(1) + '</track><track id="1" label="urchin">' + box(2) + "</track>",
     '<track id="1">: a second track with this id'),
    ('<track id="1" label="urchin">' + box(1) + box(1, x2=60) + "</track>",
     '<track id="1"> <box frame="1">: a second box of this track on this frame'),
])
def test_bad_elements(tmp_path, body, message):
    with pytest.raises(LabelFormatError, match=message):
        parse_cvat_video(write(tmp_path, body))


@pytest.mark.parametrize("text, message", [
    ("<coco/>", "not a CVAT annotation file"),
    ("<annotations><version>1.1</version></annotations>", r"no <meta><task>"),
    ('<annotations><meta><task><name>x</name></task></meta><image id="0" name="a.jpg"/></annotations>',
     "CVAT \\*for images\\*"),
])
def test_wrong_schema(tmp_path, text, message):
    path = tmp_path / "x.xml"
    path.write_text(text)
    with pytest.raises(LabelFormatError, match=message):
        parse_cvat_video(path)


def test_zero_byte_and_binary_files(tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"")
    with pytest.raises(LabelFormatError, match="empty.xml: line 1, column 0: malformed XML"):
        parse_cvat_video(tmp_path / "empty.xml")
    (tmp_path / "bin.xml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(LabelFormatError, match="bin.xml: line"):
        parse_cvat_video(tmp_path / "bin.xml")


LABELS = "<labels><label><name>urchin</name></label></labels>"


def stored(project, video):
    """(frame, x2) of a video's boxes."""
    return project.conn.execute("SELECT frame_index, x2 FROM boxes WHERE video_id = ? ORDER BY frame_index",
                                (video,)).fetchall()


def test_a_task_with_a_start_frame_and_a_frame_step(tmp_path, project):
    """CVAT writes a box's frame as the video's frame: start_frame + step x the task's own frame. A task of
    4 frames from frame 10, every 3rd, holds video frames 10, 13, 16 and 19."""
    head = ("<annotations><version>1.1</version><meta><task><name>clip</name><size>4</size>"
            "<start_frame>10</start_frame><stop_frame>19</stop_frame><frame_filter>step=3</frame_filter>"
            f"{LABELS}<original_size><width>640</width><height>360</height></original_size></task></meta>")
    path = write(tmp_path, '<track id="0" label="urchin">' + box(10) + box(13, keyframe=0) + box(19)
                 + box(22, outside=1) + "</track>", head)
    import_cvat(project, path)
    assert [frame for frame, _ in stored(project, "clip")] == [10, 13, 19]
    assert [f["frame_index"] for f in project.labeled_frames("clip")] == [10, 19]
    assert project.video("clip")["frame_count"] is None  # the task holds part of the video: the file says
    with pytest.raises(LabelFormatError, match=r"frame is outside the task's frames \(10 to 19\)"):
        parse_cvat_video(write(tmp_path, '<track id="0" label="urchin">' + box(22) + "</track>", head))


def test_a_job_export_of_a_split_task(tmp_path, project):
    """Every job after a split task's first holds frames from its own start; a job export keeps the
    frame size under <meta>, not under the job."""
    head = ("<annotations><version>1.1</version><meta><job><id>7</id><size>50</size><mode>interpolation</mode>"
            "<start_frame>50</start_frame><stop_frame>99</stop_frame>"
            f"{LABELS}</job><original_size><width>640</width><height>360</height></original_size></meta>")
    path = write(tmp_path, '<track id="3" label="urchin">' + box(60, 600, 300, 700, 400) + box(99) + "</track>",
                 head)
    report = import_cvat(project, path, video_id="clip")
    assert report.boxes_added == 2
    assert stored(project, "clip") == [(60, 640), (99, 50)]


def test_a_project_export_is_one_video_a_task(tmp_path, project):
    """A CVAT project export lists its tasks under <meta><project><tasks>, and each track names its
    task: each task becomes a video (its name the id), its subset the split."""
    task = ("<task><id>{id}</id><name>{name}</name><size>100</size><subset>{subset}</subset>"
            "<start_frame>0</start_frame><stop_frame>99</stop_frame></task>")
    head = ("<annotations><version>1.1</version><meta><project><id>1</id><name>survey</name><tasks>"
            + task.format(id=4, name="dive-a", subset="Train") + task.format(id=5, name="dive-b", subset="Test")
            + f"</tasks>{LABELS}</project></meta>")
    path = write(tmp_path, '<track id="0" label="urchin" task_id="4">' + box(1) + '</track>'
                 '<track id="1" label="urchin" task_id="5">' + box(2) + box(3) + "</track>", head)
    report = import_cvat(project, path)
    assert report.videos_new == 2 and report.boxes_added == 3
    assert {v["id"]: v["split"] for v in project.videos()} == {"dive-a": "train", "dive-b": "test"}
    assert [frame for frame, _ in stored(project, "dive-b")] == [2, 3]
    with pytest.raises(LabelFormatError, match="a CVAT project export of 2 tasks"):
        import_cvat(project, path, video_id="x")
    bad = write(tmp_path, '<track id="0" label="urchin" task_id="9">' + box(1) + "</track>", head)
    with pytest.raises(LabelFormatError, match="task_id '9' is not among the project's tasks"):
        parse_cvat_video(bad)
