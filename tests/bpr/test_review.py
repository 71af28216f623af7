"""The missing-label finder on hand-made detections."""

from bpr.review import accept, missing_labels, reject


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
