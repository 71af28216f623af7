"""Counts on hand-made detections and labels, with answers worked out by hand."""

import csv

import pytest

from bpr.results.counts import CountSource, frame_counts, timecode, video_summary, write_frame_csv, write_summary_csv
from bpr.data.store import NotFoundError


@pytest.fixture
def counted(project):
    """Video v (10 fps): frames 0-4 processed. urchin: 2, 3, 3, 0, 1; star: 0, 1, 0, 0, 0.
    Low-confidence detections (0.1) add noise that the 0.25 threshold must remove."""
    p = project
    p.conn.execute("INSERT INTO videos (id, fps) VALUES ('v', 10.0)")
    p.conn.execute("INSERT INTO videos (id, fps) VALUES ('w', 5.0)")
    run = p.create_run("r", {})
    urchin, star = p.species_id("urchin"), p.species_id("sea star")
    det = []
    for frame, n in enumerate([2, 3, 3, 0, 1]):
        det += [(run, "v", frame, urchin, 0.9)] * n
    det += [(run, "v", 1, star, 0.8), (run, "v", 3, urchin, 0.1), (run, "v", 3, urchin, 0.1),
            (run, "v", 3, urchin, 0.1), (run, "v", 3, urchin, 0.1), (run, "w", 0, star, 0.3)]
    p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) VALUES (?, ?, ?, ?, 0, 0, 1, 1, ?)", det)
    p.conn.executemany("INSERT INTO detected_frames VALUES (?, ?, ?)",
                       [(run, "v", f) for f in range(5)] + [(run, "w", f) for f in range(4)])
    return p


def row(rows, video, species):
    [r] = [r for r in rows if r["video"] == video and r["species"] == species]
    return r


def test_maxn_mean_and_frames_present(counted):
    rows = video_summary(counted, CountSource(run="r", conf=0.25))
    u = row(rows, "v", "urchin")
    assert (u["maxn"], u["maxn_frame"], u["maxn_time_s"], u["maxn_timecode"]) == (3, 1, 0.1, "00:00:00.100")
    assert u["mean_count"] == pytest.approx(9 / 5) and u["frames_present"] == 4 and u["frames_counted"] == 5
    s = row(rows, "v", "sea star")
    assert (s["maxn"], s["maxn_frame"], s["mean_count"], s["frames_present"]) == (1, 1, 0.2, 1)
    # w has no urchin at all: a MaxN 0 row, and its star counts once in 4 frames
    assert row(rows, "w", "urchin")["maxn"] == 0 and row(rows, "w", "urchin")["maxn_frame"] is None
    assert row(rows, "w", "sea star")["mean_count"] == 0.25


def test_threshold_and_per_species_thresholds(counted):
    low = video_summary(counted, CountSource(run="r", conf=0.05))
    assert row(low, "v", "urchin")["maxn"] == 4 and row(low, "v", "urchin")["maxn_frame"] == 3
    strict = video_summary(counted, CountSource(run="r", conf=0.25, species_conf={"Sea Star": 0.85}))
    assert row(strict, "v", "sea star")["maxn"] == 0
    assert row(strict, "v", "urchin")["maxn"] == 3
    assert row(strict, "v", "urchin")["threshold"] == 0.25


def test_a_score_equal_to_the_threshold_counts(counted):
    """A slider at 0.30 and a stored score of 0.3 are the same number: the detection counts, in the
    summary, the per-frame table and under a per-species threshold alike."""
    at = video_summary(counted, CountSource(run="r", conf=0.3))
    assert row(at, "w", "sea star")["maxn"] == 1
    assert frame_counts(counted, CountSource(run="r", conf=0.3), video="w")["rows"][0] == ("w", 0, 0.0, [1, 0])
    above = video_summary(counted, CountSource(run="r", conf=0.30001))
    assert row(above, "w", "sea star")["maxn"] == 0
    per_species = video_summary(counted, CountSource(run="r", conf=0.95, species_conf={"sea star": 0.8}))
    assert row(per_species, "v", "sea star")["maxn"] == 1 and row(per_species, "v", "urchin")["maxn"] == 0


def test_per_frame_table_includes_empty_frames(counted):
    table = frame_counts(counted, CountSource(run="r"), video="v")
    assert table["species"] == ["sea star", "urchin"]
    assert table["rows"] == [("v", 0, 0.0, [0, 2]), ("v", 1, 0.1, [1, 3]), ("v", 2, 0.2, [0, 3]),
                             ("v", 3, 0.3, [0, 0]), ("v", 4, 0.4, [0, 1])]


def test_counts_from_labels(counted):
    p = counted
    for frame, n in ((0, 2), (5, 4)):
        p.set_frame_status("v", frame, "full")
        for _ in range(n):
            p.add_box("v", frame, "urchin", (0, 0, 5, 5))
    p.add_box("v", 7, "urchin", (0, 0, 5, 5))  # not a labeled frame: not counted
    rows = video_summary(p, CountSource(run=None))
    u = row(rows, "v", "urchin")
    assert (u["maxn"], u["maxn_frame"], u["mean_count"], u["run"], u["threshold"]) == (4, 5, 3.0, "labels", None)


def test_csv_files(counted, tmp_path):
    summary = write_summary_csv(video_summary(counted, CountSource(run="r")), tmp_path / "s.csv")
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() >= {"video", "species", "maxn", "maxn_frame", "maxn_time_s", "mean_count",
                              "frames_present", "threshold", "run"}
    u = [r for r in rows if r["video"] == "v" and r["species"] == "urchin"][0]
    assert (u["maxn"], u["maxn_frame"], u["mean_count"], u["run"]) == ("3", "1", "1.8", "r")
    per_frame = write_frame_csv(frame_counts(counted, CountSource(run="r")), tmp_path / "f.csv")
    lines = per_frame.read_text().splitlines()
    assert lines[0] == "video,frame,time_s,sea star,urchin,run,threshold" and lines[2] == "v,1,0.1,1,3,r,0.25"
    assert len(lines) == 1 + 9 and not list(tmp_path.glob("*.part"))
    per_species = write_frame_csv(frame_counts(counted, CountSource(run="r", species_conf={"urchin": 0.5})),
                                  tmp_path / "g.csv")
    assert per_species.read_text().splitlines()[1].endswith(",r,sea star 0.25; urchin 0.5")
    labels = frame_counts(counted, CountSource())
    assert labels["run"] == "labels" and set(labels["thresholds"]) <= {None}


def test_csv_keeps_the_milliseconds_of_a_long_dive(project, tmp_path):
    project.conn.execute("INSERT INTO videos (id, fps) VALUES ('dive', 30.0)")
    run = project.create_run("r", {})
    frame = 370_001  # 3 h 25 min 33.367 s into the dive
    project.conn.execute("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                         "confidence) VALUES (?, 'dive', ?, ?, 0, 0, 1, 1, 0.9)",
                         (run, frame, project.species_id("urchin")))
    project.conn.execute("INSERT INTO detected_frames VALUES (?, 'dive', ?)", (run, frame))
    summary = write_summary_csv(video_summary(project, CountSource(run="r")), tmp_path / "s.csv")
    with open(summary) as f:
        [u] = list(csv.DictReader(f))
    assert (u["maxn_frame"], u["maxn_time_s"], u["maxn_timecode"]) == ("370001", "12333.367", "03:25:33.367")


def test_timecode():
    assert timecode(3725.5) == "01:02:05.500" and timecode(None) == ""
    # a time that rounds up carries into the minutes and hours, as a clock does
    assert timecode(59.9996) == "00:01:00.000" and timecode(3599.9999) == "01:00:00.000"
    assert timecode(1799 / 29.97) == "00:01:00.027"


def test_species_the_model_looks_for_get_rows_even_when_never_found(counted):
    counted.species_id("squat lobster")
    counted.update_run("r", summary={"classes": ["urchin", "sea star", "squat lobster"]})
    rows = video_summary(counted, CountSource(run="r"))
    lobster = row(rows, "v", "squat lobster")
    assert (lobster["maxn"], lobster["mean_count"], lobster["frames_present"]) == (0, 0.0, 0)


@pytest.fixture
def image_folder(counted, tmp_path):
    """Folder dive/ holds img1, img2, img3 and img10 (DIVE's frames 0-3, natural order); the project
    has all but img3. Urchins detected: img1 1, img2 3, img10 3; star: img10 1."""
    p = counted
    folder = tmp_path / "dive"
    folder.mkdir()
    for name in ("img1", "img2", "img3", "img10"):
        (folder / f"{name}.jpg").write_bytes(b"")
    run = p.run("r").id
    urchin, star = p.species_id("urchin"), p.species_id("sea star")
    for name, urchins, stars in (("img10", 3, 1), ("img1", 1, 0), ("img2", 3, 0)):
        p.conn.execute("INSERT INTO videos (id, kind, path, frame_count) VALUES (?, 'image', ?, 1)",
                       (f"dive/{name}", str(folder / f"{name}.jpg")))
        p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                           "confidence) VALUES (?, ?, 0, ?, 0, 0, 1, 1, 0.9)",
                           [(run, f"dive/{name}", urchin)] * urchins + [(run, f"dive/{name}", star)] * stars)
        p.conn.execute("INSERT INTO detected_frames VALUES (?, ?, 0)", (run, f"dive/{name}"))
    return p


def test_an_image_folder_is_counted_as_one_sequence(image_folder):
    rows = video_summary(image_folder, CountSource(run="r"))
    assert sorted({r["video"] for r in rows}) == ["dive", "v", "w"]  # no row per image
    u = row(rows, "dive", "urchin")
    # MaxN 3 is first reached on img2: DIVE's frame 1 (img10 is frame 3, after img3 on disk)
    assert (u["maxn"], u["maxn_frame"], u["maxn_image"], u["maxn_time_s"], u["maxn_timecode"]) == \
        (3, 1, "dive/img2", None, "")
    assert (u["mean_count"], u["frames_present"], u["frames_counted"]) == (pytest.approx(7 / 3), 3, 3)
    s = row(rows, "dive", "sea star")
    assert (s["maxn"], s["maxn_frame"], s["maxn_image"], s["frames_present"]) == (1, 3, "dive/img10", 1)
    assert row(rows, "v", "urchin")["maxn_image"] is None
    # one image, or the folder's name, gives the folder's rows alone
    for video in ("dive/img10", "dive"):
        folder_rows = [r for r in rows if r["video"] == "dive"]
        assert video_summary(image_folder, CountSource(run="r"), video=video) == folder_rows


def test_an_image_folders_per_frame_rows_are_its_images(image_folder):
    table = frame_counts(image_folder, CountSource(run="r"), video="dive/img1")
    assert table["rows"] == [("dive/img1", 0, None, [0, 1]), ("dive/img10", 0, None, [1, 3]),
                             ("dive/img2", 0, None, [0, 3])]


def test_counts_of_an_unknown_video_name_it(counted):
    with pytest.raises(NotFoundError, match="no video, image or image folder 'nope'"):
        video_summary(counted, CountSource(run="r"), video="nope")


def test_what_the_frame_view_shows_counted_per_frame(counted):
    """The run's detections at the threshold or above on the frames it processed, per frame and species;
    the labels on every other frame (on every frame with no run), labeled or not; one frame when asked."""
    from bpr.results.counts import shown_per_frame

    shown = shown_per_frame(counted, ["v", "w"], "r", 0.3)
    assert shown == {("v", 0): {"urchin": 2}, ("v", 1): {"urchin": 3, "sea star": 1}, ("v", 2): {"urchin": 3},
                     ("v", 4): {"urchin": 1}, ("w", 0): {"sea star": 1}}
    assert shown_per_frame(counted, ["v"], "r", 0.05, frame=3) == {("v", 3): {"urchin": 4}}
    counted.add_box("v", 7, "urchin", (0, 0, 5, 5))  # frame 7 is not a labeled frame: shown all the same
    counted.add_box("v", 1, "urchin", (0, 0, 5, 5))  # frame 1 the run processed: its detections show
    assert shown_per_frame(counted, ["v"], None, 0.3) == {("v", 1): {"urchin": 1}, ("v", 7): {"urchin": 1}}
    assert shown_per_frame(counted, ["v"], "r", 0.3)[("v", 7)] == {"urchin": 1}
    assert shown_per_frame(counted, ["v"], "r", 0.3)[("v", 1)] == {"urchin": 3, "sea star": 1}


def test_a_runs_counts_use_the_thresholds_chosen_on_val_unless_overridden(counted):
    """The thresholds kept in the run's record (bpr.results.evaluate.choose_thresholds): per species,
    and the overall one for the others; --conf overrides them all, --species-conf one."""
    counted.update_run("r", summary={"thresholds": {"overall": 0.05, "species": {"sea star": 0.85}}})
    source = CountSource.for_run(counted, "r")
    rows = video_summary(counted, source)
    assert row(rows, "v", "urchin")["maxn"] == 4 and row(rows, "v", "urchin")["threshold"] == 0.05
    assert row(rows, "v", "sea star")["maxn"] == 0 and row(rows, "v", "sea star")["threshold"] == 0.85
    assert CountSource.for_run(counted, "r", conf=0.25) == CountSource(run="r", conf=0.25)
    assert CountSource.for_run(counted, "r", species_conf={"sea star": 0.5}).species_conf == {"sea star": 0.5}
    counted.update_run("r", summary={})
    assert CountSource.for_run(counted, "r").conf == 0.25  # no thresholds kept: the documented default


def test_a_threshold_below_the_detection_floor_is_flagged(counted, tmp_path):
    """Detection kept boxes from 0.2 on video v: a count at 0.05 there counts only what was kept, and its
    row says so."""
    counted.update_run("r", summary={"detection_floor": {"v": 0.2}})
    rows = video_summary(counted, CountSource(run="r", conf=0.05))
    assert row(rows, "v", "urchin")["below_floor"] is True and row(rows, "v", "urchin")["detection_floor"] == 0.2
    assert row(rows, "w", "urchin")["below_floor"] is None  # no floor recorded there
    rows = video_summary(counted, CountSource(run="r", conf=0.25))
    assert row(rows, "v", "urchin")["below_floor"] is False
    with open(write_summary_csv(rows, tmp_path / "c.csv")) as f:
        written = list(csv.DictReader(f))
    assert {r["below_floor"] for r in written if r["video"] == "v"} == {"False"}
