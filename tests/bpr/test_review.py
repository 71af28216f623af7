"""The missing-label finder on hand-made detections."""

from bpr.results.review import accept, missing_labels, reject


def test_suggests_confident_unlabeled_detections_on_partial_frames(project):
    p = project
    p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    p.set_frame_status("v", 0, "partial")
    p.set_frame_status("v", 1, "full")
    p.add_box("v", 0, "urchin", (0, 0, 10, 10))
    run = p.create_run("r", {})
    sid = p.species_id("urchin")
    rows = [
        (0, 1, 1, 10, 10, 0.9),      # overlaps the label: not a suggestion
        (0, 50, 50, 60, 60, 0.8),    # an unboxed animal: suggested
        (0, 80, 80, 90, 90, 0.2),    # below the confidence: not suggested
        (1, 50, 50, 60, 60, 0.95),   # a full frame: nothing is missing there
    ]
    p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) VALUES (?, 'v', ?, ?, ?, ?, ?, ?, ?)",
                       [(run, f, sid, *box, c) for f, *box, c in rows])
    [s] = missing_labels(p, "r", conf=0.5)
    assert (s.frame_index, s.box, s.confidence) == (0, (50, 50, 60, 60), 0.8)
    box_id = accept(p, s)
    assert p.boxes("v", 0)[-1]["id"] == box_id and p.boxes("v", 0)[-1]["source"] == "accepted"
    assert missing_labels(p, "r", conf=0.5) == []  # now it overlaps a label
    low = missing_labels(p, "r", conf=0.1)
    assert [x.confidence for x in low] == [0.2]
    reject(p, low[0])
    assert missing_labels(p, "r", conf=0.1) == []


def test_an_images_suggestions_cover_its_folder(project):
    """An image set is reviewed folder by folder: asking for one image's suggestions gives those of
    every image in its folder, and a video's stay its own."""
    p = project
    for vid, kind in (("train/a", "image"), ("train/b", "image"), ("val/c", "image"), ("v", "video")):
        p.conn.execute("INSERT INTO videos (id, kind) VALUES (?, ?)", (vid, kind))
        p.set_frame_status(vid, 0, "partial")
    run = p.create_run("r", {})
    sid = p.species_id("urchin")
    p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) VALUES (?, ?, 0, ?, 0, 0, 10, 10, ?)",
                       [(run, "train/a", sid, 0.6), (run, "train/b", sid, 0.9), (run, "val/c", sid, 0.7),
                        (run, "v", sid, 0.8)])
    assert [s.video_id for s in missing_labels(p, "r", video="train/a")] == ["train/b", "train/a"]
    assert [s.video_id for s in missing_labels(p, "r", video="train")] == ["train/b", "train/a"]
    assert [s.video_id for s in missing_labels(p, "r", video="v")] == ["v"]
    assert len(missing_labels(p, "r")) == 4


def test_the_finder_never_suggests_a_degenerate_box_or_one_over_most_of_the_frame(project):
    p = project
    p.conn.execute("INSERT INTO videos (id, width, height) VALUES ('v', 100, 100)")
    p.set_frame_status("v", 0, "partial")
    run = p.create_run("r", {})
    sid = p.species_id("urchin")
    rows = [(10, 10, 11.5, 30, 0.9),   # 1.5 px wide: degenerate
            (0, 0, 80, 70, 0.9),       # 56 % of the frame: an untrained model's guess
            (0, 0, 70, 70, 0.8),       # 49 %: kept
            (50, 50, 60, 60, 0.7)]
    p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) VALUES (?, 'v', 0, ?, ?, ?, ?, ?, ?)", [(run, sid, *r) for r in rows])
    assert [s.box for s in missing_labels(p, "r", conf=0.5)] == [(0, 0, 70, 70), (50, 50, 60, 60)]
