"""VIAME CSV: export labels and detections with DIVE's header, import them back unchanged; videos and image folders."""

from pathlib import Path

import pytest
from PIL import Image

from bpr.data.formats import LabelFormatError, export_viame, import_viame, import_yolo, write_batch
from bpr.data.formats.common import BoxRecord, ImportBatch, VideoRecord
from bpr.data.formats.viame import HEADER, read_viame
from bpr.data.store import Project
from tests.conftest import shared


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


@pytest.mark.parametrize("metadata", ['# metadata,fps: 12.5', '# metadata,"Fps: ""12.5"""'])
def test_the_frame_rate_is_read_as_dive_writes_it(tmp_path, metadata):
    path = tmp_path / "a.csv"
    path.write_text(f"{HEADER}\n{metadata},\n1,,3,10,10,50,50,0.8,-1,fish,1\n")
    assert read_viame(path).videos[0].fps == 12.5


def test_species_is_the_highest_confidence_pair_and_attributes_are_skipped(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "\n1,img.png,3,10,10,50,50,0.8,-1,fish,0.2,rock,0.7,(kp) head 3 4\n")
    batch = read_viame(path, "v")
    assert [(b.frame_index, b.species, b.track_id) for b in batch.boxes] == [(3, "rock", 1)]


def test_a_tracks_second_box_on_a_frame_is_kept_as_a_box_of_its_own(project, tmp_path):
    """Keyed by track alone, the second box was taken for the first and dropped ("1 already in the
    project"). It is kept, without the track id two boxes of one frame cannot share."""
    path = tmp_path / "v.csv"
    path.write_text("0,v.mp4,1,10,10,50,50,1,-1,urchin,1\n0,v.mp4,1,100,100,150,150,1,-1,urchin,1\n"
                    "1,v.mp4,1,200,10,250,50,1,-1,urchin,1\n0,v.mp4,2,12,10,52,50,1,-1,urchin,1\n")
    report = import_viame(project, path, video_id="v")
    assert report.boxes_added == 4 and report.boxes_already_there == 0
    assert "1 row(s) repeat a track id on a frame (first: line 2, track 0)" in report.warnings[0]
    assert boxes_of(project, "v") == [(1, "urchin", 10, 10, 50, 50, 0), (1, "urchin", 100, 100, 150, 150, None),
                                      (1, "urchin", 200, 10, 250, 50, 1), (2, "urchin", 12, 10, 52, 50, 0)]
    assert import_viame(project, path, video_id="v").boxes_added == 0  # importing again adds nothing


@pytest.mark.parametrize("row, message", [
    ("1,img.png,3,10,10,50", r"a.csv:2: expected at least 9 columns"),
    ("x,img.png,3,10,10,50,50,1,-1,fish,1", r"a.csv:2: track, frame and box must be numbers"),
    ("1,img.png,3,10,10,50,50,1,-1,fish,high", r"a.csv:2: a species confidence is not a number"),
])
def test_bad_rows(tmp_path, row, message):
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "\n" + row + "\n")
    with pytest.raises(LabelFormatError, match=message):
        read_viame(path)


def test_rows_as_dives_web_writer_pads_them(tmp_path):
    """DIVE's web writer pads the header and rows with empty columns; a pair is a name and a number,
    both there, as DIVE's own parser reads them. The highest confidence names the species."""
    path = tmp_path / "a.csv"
    path.write_text(HEADER + ",,,,\n"
                    "1,v.mp4,3,10,10,50,50,0.894,-1,seriola,0.894,pristipomoides_auricilla,0.72,,,,\n"
                    "2,v.mp4,3,60,10,90,50,1,-1,urchin,1,\n"
                    "3,v.mp4,4,60,10,90,50,1,-1,urchin,0.4,,,sea star,0.9,(atr) length 3\n")
    batch = read_viame(path, "v")
    assert [(b.track_id, b.species) for b in batch.boxes] == [(1, "seriola"), (2, "urchin"), (3, "sea star")]
    assert batch.warnings == [] and batch.left_out == []


def test_rows_without_a_species_are_unknown_as_dive_reads_them(tmp_path):
    """VIAME's C++ writer writes a detection without a class as the 9 columns alone."""
    path = tmp_path / "a.csv"
    path.write_text("1,v.mp4,3,10,10,50,50,0.7,-1\n2,v.mp4,3,60,10,90,50,0.6,-1,,\n3,v.mp4,4,1,1,9,9,1,-1,urchin,1\n")
    batch = read_viame(path, "v")
    assert [b.species for b in batch.boxes] == ["unknown", "unknown", "urchin"]
    assert batch.warnings == [f"{path}: 2 row(s) name no species (first: line 1); imported as 'unknown', "
                              "as DIVE reads them"]


def test_boxes_with_no_area_are_left_out_and_named_by_line(tmp_path, project):
    """DIVE's test data has rows with y2 < y1; DIVE's parser does not put the corners in order, so
    neither does this: the box is left out, the rest of the file imported."""
    path = tmp_path / "a.csv"
    rows = [f"{i},v.mp4,{i},10,10,50,50,1,-1,urchin,1" for i in range(6)]
    rows[1] = "1,v.mp4,1,10,50,50,10,1,-1,urchin,1"       # y2 < y1
    rows += [f"{i},v.mp4,{i},10,10,10,50,1,-1,urchin,1" for i in range(6, 10)]  # no width
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    report = import_viame(project, path, video_id="v")
    assert report.boxes_added == 5
    assert report.left_out == [f"{path}: 5 boxes with no area (x2 <= x1 or y2 <= y1) left out "
                               "(line 3, line 8, line 9, … 5 in all)"]
    assert f"left out: {report.left_out[0]}" in report.lines()


def test_binary_garbage(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(LabelFormatError, match="not a text CSV"):
        read_viame(path)


# -- image folders (DIVE's image sequences) ---------------------------------------------------------

def image_folder(tmp_path, names=("img1.jpg", "img2.jpg", "img3.png", "img10.jpg"), size=(200, 100)):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in names:
        Image.new("RGB", size).save(folder / name)
    return folder


def add_images(project, folder, names, boxes):
    """Images ``names`` of ``folder`` as project images 'set/<stem>', with boxes {stem: [(x1, y1, x2, y2)]}."""
    batch = ImportBatch(species={"urchin": None})
    for name in names:
        vid = f"set/{Path(name).stem}"
        batch.videos.append(VideoRecord(vid, kind="image", path=folder / name, frame_count=1, width=200,
                                        height=100, split="val"))
        batch.boxes += [BoxRecord(vid, 0, "urchin", *box, origin_key=f"t:{i}")
                        for i, box in enumerate(boxes.get(Path(name).stem, []))]
    write_batch(project, batch)


def test_an_image_folder_is_one_csv_framed_in_the_folders_natural_order(project, tmp_path):
    folder = image_folder(tmp_path)
    add_images(project, folder, ["img10.jpg", "img2.jpg"], {"img10": [(1, 2, 30, 40)], "img2": [(5, 5, 9, 9)]})
    [path] = export_viame(project, tmp_path / "out")
    assert path.name == "set.csv"
    lines = path.read_text().splitlines()
    assert lines[1].startswith("# metadata,") and "fps" not in lines[1]
    # The folder holds img1, img2, img3, img10: DIVE's frames 0-3. img1 and img3 are not in the project.
    assert lines[2:] == ["0,img2.jpg,1,5.000,5.000,9.000,9.000,1,-1,urchin,1",
                         "1,img10.jpg,3,1.000,2.000,30.000,40.000,1,-1,urchin,1"]


def test_an_image_folder_round_trips_into_a_fresh_project(project, tmp_path):
    folder = image_folder(tmp_path)
    add_images(project, folder, ["img10.jpg", "img2.jpg"],
               {"img10": [(1, 2, 30, 40), (50, 60, 70, 80)], "img2": [(5, 5, 9, 9)]})
    [path] = export_viame(project, tmp_path / "out")
    with Project.create(tmp_path / "fresh") as fresh:
        report = import_viame(fresh, path, images_dir=folder, status="partial")
        assert report.lines()[0] == "images: 2 (2 new, 0 without a file)" and report.boxes_added == 3
        for stem in ("img10", "img2"):
            assert [b[:6] for b in boxes_of(fresh, f"shots/{stem}")] == \
                [b[:6] for b in boxes_of(project, f"set/{stem}")]
            assert fresh.frame_status(f"shots/{stem}", 0) == "partial"
            assert fresh.video(f"shots/{stem}")["status"] == "ok"
        assert import_viame(fresh, path, images_dir=folder).boxes_added == 0


def test_detections_made_elsewhere_land_on_the_projects_own_images(project, tmp_path):
    folder = image_folder(tmp_path)
    add_images(project, folder, ["img10.jpg", "img2.jpg"], {})
    csv_path = folder / "detections.csv"  # beside the images, as DIVE keeps it; no --images needed
    csv_path.write_text(HEADER + "\n3,img10.jpg,3,10,10,250,50,0.9,-1,urchin,0.9\n"
                                 "4,img3.png,2,1,1,5,5,0.7,-1,sea star,0.7\n")
    source = project.video("set/img10")["source"]
    report = import_viame(project, csv_path)
    assert report.videos_new == 1  # img3 was not in the project yet; img10 keeps its id
    assert project.video("set/img10")["source"] == source
    assert boxes_of(project, "set/img10") == [(0, "urchin", 10, 10, 200, 50, 3)]  # clipped to its 200 px
    assert boxes_of(project, "shots/img3") == [(0, "sea star", 1, 1, 5, 5, 4)]
    assert any("clipped" in w for w in report.warnings)


def test_a_csv_exported_from_the_project_comes_back_without_naming_the_folder(project, tmp_path):
    folder = image_folder(tmp_path)
    add_images(project, folder, ["img10.jpg", "img2.jpg"], {"img10": [(1, 2, 30, 40)]})
    [path] = export_viame(project, tmp_path / "out")
    with open(path, "a") as f:
        f.write("7,img2.jpg,1,3,3,9,9,1,-1,urchin,1\n")  # boxed in DIVE
    report = import_viame(project, path)
    assert (report.videos_new, report.boxes_added, report.boxes_already_there) == (0, 1, 1)
    assert boxes_of(project, "set/img2") == [(0, "urchin", 3, 3, 9, 9, 7)]


def test_a_new_image_never_takes_the_id_of_another_file(project, tmp_path):
    folder = image_folder(tmp_path, names=("a.jpg", "a.png"))
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('shots/a', 'image')")
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("1,a.jpg,0,1,1,5,5,1,-1,fish,1\n2,a.png,1,1,1,5,5,1,-1,fish,1\n")
    import_viame(project, csv_path, images_dir=folder)
    assert {v["id"] for v in project.videos()} == {"shots/a", "shots/a-2", "shots/a-3"}
    assert project.video("shots/a")["path"] is None  # the image already there is left as it was


def test_rows_without_names_take_the_image_at_their_frame(project, tmp_path):
    folder = image_folder(tmp_path)
    csv_path = tmp_path / "blank.csv"
    csv_path.write_text("1,,3,1,1,5,5,1,-1,fish,1\n2, ,0,1,1,5,5,1,-1,fish,1\n")
    import_viame(project, csv_path, images_dir=folder)
    assert [v["id"] for v in project.videos()] == ["shots/img1", "shots/img10"]


@pytest.mark.parametrize("row, message", [
    ("1,img99.jpg,0,1,1,5,5,1,-1,fish,1", r"a.csv:1: image img99.jpg is not in .*shots \(give the folder"),
    ("1,,7,1,1,5,5,1,-1,fish,1", r"a.csv:1: frame 7 has no image: .*shots holds 5 images"),
    ("1,clip.mp4,0,1,1,5,5,1,-1,fish,1", r"a.csv:1: column 2 should name an image file, found 'clip.mp4'"),
    ("1,broken.jpg,0,1,1,5,5,1,-1,fish,1", r"broken.jpg: not a readable image"),
])
def test_bad_image_rows(project, tmp_path, row, message):
    folder = image_folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(row + "\n")
    with pytest.raises(LabelFormatError, match=message):
        import_viame(project, csv_path, images_dir=folder)
    assert project.videos() == []


def test_a_video_id_reads_image_names_as_a_videos_rows(project, tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("1,frame000.png,4,1,1,5,5,1,-1,fish,1\n")  # some tools name a video's frames
    import_viame(project, csv_path, video_id="dive1")
    assert boxes_of(project, "dive1") == [(4, "fish", 1, 1, 5, 5, 1)]
    with pytest.raises(ValueError, match="not both"):
        import_viame(project, csv_path, video_id="dive1", images_dir=tmp_path)


def test_brittlestar_labels_round_trip_through_dive_image_sequences(project, tmp_path):
    root = shared("brittlestar")
    import_yolo(project, root / "data.yaml")
    paths = export_viame(project, tmp_path / "viame")
    assert sorted(p.name for p in paths) == ["test_images.csv", "train_images.csv", "val_images.csv"]
    with Project.create(tmp_path / "fresh") as fresh:
        for path in paths:
            import_viame(fresh, path, images_dir=root / path.stem.replace("_", "/"))
        assert fresh.summary()["boxes"] == project.summary()["boxes"]
        per_file = {}
        for p in (project, fresh):
            per_file[p] = sorted((Path(v["path"]).name, b[1:6]) for v in p.videos() for b in boxes_of(p, v["id"]))
        assert per_file[fresh] == per_file[project]


def test_images_without_a_file_are_grouped_by_their_ids_folder(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative id must not be read as a folder of the working directory
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "p0.jpg")
    sid = project.species_id("fish")
    for vid in ("a/p10", "a/p9", "b/p1"):
        project.conn.execute("INSERT INTO videos (id, kind) VALUES (?, 'image')", (vid,))
        project.conn.execute("INSERT INTO boxes (video_id, frame_index, species_id, x1, y1, x2, y2, source, created) "
                             "VALUES (?, 0, ?, 1, 1, 2, 2, 'drawn', 0)", (vid, sid))
    paths = export_viame(project, tmp_path / "out")
    assert [(p.name, [line.split(",")[1:3] for line in p.read_text().splitlines()[2:]]) for p in paths] == [
        ("a.csv", [["p9.jpg", "0"], ["p10.jpg", "1"]]), ("b.csv", [["p1.jpg", "0"]])]


def test_labels_completed_elsewhere_and_imported_back_add_only_the_new_boxes(demo_project, tmp_path):
    """Export to DIVE, box the animals nobody boxed, import back: the boxes already there stay single."""
    video = demo_project.videos("train")[0]["id"]
    before = boxes_of(demo_project, video)
    [csv_path] = export_viame(demo_project, tmp_path, videos=[video])
    with open(csv_path, "a") as f:
        f.write("900,v.mp4,12,10,10,40,40,1,-1,urchin,1\n"        # an animal nobody had boxed
                "901,v.mp4,12,10,10,40,40,1,-1,urchin,1\n")       # the same box twice in the file: both kept
        x1, y1, x2, y2 = before[0][2:6]
        f.write(f"902,v.mp4,{before[0][0]},{x1 + 0.4},{y1},{x2},{y2 - 0.4},1,-1,{before[0][1]},1\n"  # the same
                f"903,v.mp4,{before[0][0]},{x1 + 2},{y1},{x2},{y2},1,-1,{before[0][1]},1\n")  # moved: a new box
    report = import_viame(demo_project, csv_path, video_id=video)
    assert (report.boxes_added, report.boxes_already_there) == (3, len(before) + 1)
    assert len(boxes_of(demo_project, video)) == len(before) + 3


def test_a_replacing_import_makes_the_csv_the_videos_labels(demo_project, tmp_path):
    """Edited in DIVE: one box deleted, one moved, one added. Replacing brings back exactly those labels."""
    video, other = (v["id"] for v in demo_project.videos("train")[:2])
    untouched = boxes_of(demo_project, other)
    [csv_path] = export_viame(demo_project, tmp_path, videos=[video])
    header, metadata, *rows = csv_path.read_text().splitlines(keepends=True)
    assert len(rows) == len(boxes_of(demo_project, video)) > 3
    moved = rows[2].split(",")
    moved[3] = str(float(moved[3]) + 1)
    edited = [header, metadata, rows[0], ",".join(moved), *rows[3:],   # rows[1] deleted
              "900,v.mp4,12,10,10,40,40,1,-1,urchin,1\n"]
    csv_path.write_text("".join(edited))
    with Project.create(tmp_path / "expected") as expected:
        import_viame(expected, csv_path, video_id=video)
        wanted = boxes_of(expected, video)
    before = boxes_of(demo_project, video)
    first = demo_project.conn.execute("SELECT min(id) FROM boxes WHERE video_id = ?", (video,)).fetchone()[0]
    demo_project.conn.execute("UPDATE boxes SET source = 'accepted' WHERE id = ?", (first,))
    report = import_viame(demo_project, csv_path, video_id=video, replace=True)
    assert boxes_of(demo_project, video) == wanted
    # the deleted box and the moved one's old place out; its new place and the new box in; the rest kept
    assert (report.boxes_removed, report.boxes_added, report.boxes_already_there) == (2, 2, len(before) - 2)
    assert report.lines()[1] == (f"boxes: 2 removed, 2 added, {len(before) - 2} unchanged: the file's boxes are "
                                 "now the labels there")
    source = demo_project.conn.execute("SELECT source FROM boxes WHERE id = ?", (first,)).fetchone()
    assert source == ("accepted",)
    assert boxes_of(demo_project, other) == untouched
    # the same file again changes nothing
    same = import_viame(demo_project, csv_path, video_id=video, replace=True)
    assert (same.boxes_removed, same.boxes_added, same.boxes_already_there) == (0, 0, len(rows))
    assert boxes_of(demo_project, video) == wanted
    # a plain import of the same file adds nothing, and says so without "removed"
    again = import_viame(demo_project, csv_path, video_id=video)
    assert (again.boxes_added, again.boxes_removed) == (0, None) and "removed" not in again.lines()[1]


def test_boxes_kept_by_a_replacing_import_may_trade_track_ids(project):
    """Two boxes of one frame, their track ids swapped in DIVE: both are kept, each with its new track (a
    frame's origin keys are unique, so setting them one after the other would collide)."""
    def batch(tracks, replace):
        boxes = [BoxRecord("v", 3, "urchin", 10, 10, 20, 20, track_id=tracks[0], origin_key=f"viame:{tracks[0]}"),
                 BoxRecord("v", 3, "urchin", 50, 50, 60, 60, track_id=tracks[1], origin_key=f"viame:{tracks[1]}")]
        return ImportBatch(species={"urchin": None}, videos=[VideoRecord("v")], boxes=boxes,
                           replace=["v"] if replace else [])

    write_batch(project, batch((1, 2), replace=False))
    ids = [r[0] for r in project.conn.execute("SELECT id FROM boxes ORDER BY x1")]
    report = write_batch(project, batch((2, 1), replace=True))
    assert (report.boxes_removed, report.boxes_added, report.boxes_already_there) == (0, 0, 2)
    assert project.conn.execute("SELECT id, track_id, origin_key FROM boxes ORDER BY x1").fetchall() == [
        (ids[0], 2, "viame:2"), (ids[1], 1, "viame:1")]


def test_a_replacing_import_of_an_image_folder_clears_the_images_whose_boxes_were_deleted(project, tmp_path):
    folder = image_folder(tmp_path)
    add_images(project, folder, ["img10.jpg", "img2.jpg"], {"img10": [(1, 2, 30, 40), (50, 60, 70, 80)],
                                                            "img2": [(5, 5, 9, 9)]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (200, 100)).save(elsewhere / "img2.jpg")   # the same name in another folder
    batch = ImportBatch(species={"urchin": None},
                        videos=[VideoRecord("other/img2", kind="image", path=elsewhere / "img2.jpg", width=200,
                                            height=100)],
                        boxes=[BoxRecord("other/img2", 0, "urchin", 1, 1, 9, 9, origin_key="o:1")])
    write_batch(project, batch)
    csv_path = folder / "set.csv"  # from DIVE: img2's only box deleted, one of img10's moved
    csv_path.write_text(HEADER + "\n0,img10.jpg,3,1,2,30,40,1,-1,urchin,1\n1,img10.jpg,3,55,60,75,80,1,-1,urchin,1\n")
    report = import_viame(project, csv_path, split="test", replace=True)
    assert (report.boxes_removed, report.boxes_added, report.boxes_already_there) == (2, 1, 1)
    assert (report.videos_new, report.images) == (0, 2)
    assert boxes_of(project, "set/img2") == []
    assert [project.video(v)["split"] for v in ("set/img2", "set/img10", "other/img2")] == ["test", "test", "none"]
    assert [b[2:6] for b in boxes_of(project, "set/img10")] == [(1, 2, 30, 40), (55, 60, 75, 80)]
    assert len(boxes_of(project, "other/img2")) == 1   # not in the folder: not touched


def test_a_bad_csv_replaces_nothing(demo_project, tmp_path):
    video = demo_project.videos("train")[0]["id"]
    before = boxes_of(demo_project, video)
    [csv_path] = export_viame(demo_project, tmp_path, videos=[video])
    with open(csv_path, "a") as f:
        f.write("901,v.mp4,12,40,10,10,40,1,-1,urchin,high\n")   # not a number on the last line
    with pytest.raises(LabelFormatError, match="not a number"):
        import_viame(demo_project, csv_path, video_id=video, replace=True)
    assert boxes_of(demo_project, video) == before


def test_a_fully_labeled_image_folder_brings_its_empty_images_too(tmp_path):
    """DIVE writes rows only for boxes. In a fully labeled (val/test) sequence an image without a row
    holds no animal, and evaluation must see it; a partially labeled one says nothing about it."""
    folder = image_folder(tmp_path)
    (folder / "notes.jpg").write_bytes(b"not an image")
    csv_path = folder / "dive.csv"
    csv_path.write_text(HEADER + "\n0,img10.jpg,3,1,2,30,40,1,-1,urchin,1\n")
    with Project.create(tmp_path / "partial") as project:
        assert import_viame(project, csv_path, status="partial").images == 1
    with Project.create(tmp_path / "full") as project:
        report = import_viame(project, csv_path, split="test", status="full")
        ids = ["shots/img1", "shots/img2", "shots/img3", "shots/img10"]
        assert (report.images, report.boxes_added, report.frames) == (4, 1, 4)
        assert sorted(v["id"] for v in project.videos("test")) == sorted(ids)
        assert [len(boxes_of(project, v)) for v in ids] == [0, 0, 0, 1]
        assert {project.frame_status(v, 0) for v in ids} == {"full"}
        assert report.left_out == [f"{folder}: 1 image without boxes that cannot be read left out (notes.jpg)"]
