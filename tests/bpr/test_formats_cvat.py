"""CVAT for video 1.1: what is imported, and a clear message for each kind of bad input."""

import pytest

from bpr.data.formats import LabelFormatError, import_cvat
from bpr.data.formats.cvat import parse_cvat_video

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
def test_degenerate_box_is_rejected(tmp_path, coords):
    path = write(tmp_path, '<track id="1" label="urchin">' + box(12, *coords) + "</track>")
    with pytest.raises(LabelFormatError,
                       match=r'clip.xml: <track id="1"> <box frame="12">: box has x2 <= x1 or y2 <= y1'):
        parse_cvat_video(path)


def test_box_outside_the_frame_is_clipped_and_counted(tmp_path):
    path = write(tmp_path, '<track id="1" label="urchin">' + box(1, -5, 10, 50, 40)
                 + box(2, 600, 300, 700, 400) + box(3) + "</track>")
    video = parse_cvat_video(path)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in video.boxes[:2]] == [(0, 10, 50, 40), (600, 300, 640, 360)]
    assert video.warnings == [f"{path}: 2 box(es) reached outside the frame and were clipped to it"]


def test_box_wholly_outside_is_rejected(tmp_path):
    path = write(tmp_path, '<track id="1" label="urchin">' + box(1, 700, 10, 800, 40) + "</track>")
    with pytest.raises(LabelFormatError, match="wholly outside the 640x360 frame"):
        parse_cvat_video(path)


@pytest.mark.parametrize("body, message", [
    ('<track id="1" label="urchin"><box frame="x" outside="0" xtl="1" ytl="1" xbr="2" ybr="2"/></track>',
     "frame must be a non-negative integer"),
    ('<track id="1" label="urchin"><box frame="1" outside="0" xtl="a" ytl="1" xbr="2" ybr="2"/></track>',
     "must be numbers"),
    ('<track id="1" label="urchin">' + box(100) + "</track>", "past the task's 100 frames"),
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
