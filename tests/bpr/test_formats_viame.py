"""VIAME CSV: export labels and detections with DIVE's header, import them back unchanged."""

import pytest

from bpr.formats import LabelFormatError, export_viame, import_viame
from bpr.formats.viame import HEADER, read_viame
from bpr.store import Project


def boxes_of(project, video):
    return sorted((r[0], r[1], round(r[2], 3), round(r[3], 3), round(r[4], 3), round(r[5], 3), r[6])
                  for r in project.conn.execute(
                      "SELECT b.frame_index, s.name, b.x1, b.y1, b.x2, b.y2, b.track_id FROM boxes b "
                      "JOIN species s ON s.id = b.species_id WHERE b.video_id = ?", (video,)))


def test_labels_round_trip_through_viame(demo_project, tmp_path):
    video = demo_project.videos("val")[0]
    [csv_path] = export_viame(demo_project, tmp_path / "viame", videos=[video["id"]])
    lines = csv_path.read_text().splitlines()
    assert lines[0] == HEADER and lines[1].startswith("# metadata,fps: 30")
    with Project.create(tmp_path / "fresh") as fresh:
        report = import_viame(fresh, csv_path, video_id=video["id"])
        assert report.boxes_added == len(lines) - 2
        assert boxes_of(fresh, video["id"]) == boxes_of(demo_project, video["id"])
        assert fresh.video(video["id"])["fps"] == 30
        assert import_viame(fresh, csv_path, video_id=video["id"]).boxes_added == 0


def test_detections_export_with_confidence(project, tmp_path):
    project.conn.execute("INSERT INTO videos (id, fps, path) VALUES ('clip', 15, '/data/clip.mp4')")
    run = project.create_run("r", {})
    sid = project.species_id("urchin")
    project.conn.executemany(
        "INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, confidence) "
        "VALUES (?, 'clip', ?, ?, 1, 2, 30, 40, ?)", [(run, 4, sid, 0.9), (run, 5, sid, 0.2)])
    [path] = export_viame(project, tmp_path, run="r", min_conf=0.5)
    rows = path.read_text().splitlines()[2:]
    assert rows == ["0,clip.mp4,4,1.000,2.000,30.000,40.000,0.9,-1,urchin,0.9"]


def test_species_is_the_highest_confidence_pair_and_attributes_are_skipped(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "\n1,img.png,3,10,10,50,50,0.8,-1,fish,0.2,rock,0.7,(kp) head 3 4\n")
    batch = read_viame(path, "v")
    assert [(b.frame_index, b.species, b.track_id) for b in batch.boxes] == [(3, "rock", 1)]


@pytest.mark.parametrize("row, message", [
    ("1,img.png,3,10,10,50", r"a.csv:2: expected at least 9 columns"),
    ("x,img.png,3,10,10,50,50,1,-1,fish,1", r"a.csv:2: track, frame and box must be numbers"),
    ("1,img.png,3,10,10,50,50,1,-1,fish", r"a.csv:2: expected species,confidence pairs"),
    ("1,img.png,3,10,10,50,50,1,-1,fish,high", r"a.csv:2: a species confidence is not a number"),
    ("1,img.png,3,50,10,10,50,1,-1,fish,1", r"a.csv: line 2: box has x2 <= x1"),
])
def test_bad_rows(tmp_path, row, message):
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "\n" + row + "\n")
    with pytest.raises(LabelFormatError, match=message):
        read_viame(path)


def test_binary_garbage(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(LabelFormatError, match="not a text CSV"):
        read_viame(path)
