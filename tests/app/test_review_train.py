"""Review (detect, confidence, counts, missing labels) and Train (start, stop, resume, failure)."""

from unittest.mock import MagicMock

import numpy as np
import pytest
from PySide6.QtCore import Qt


def set_tiny_training(panel, epochs, p_obj=None, p_box=None):
    """As a user would: a few epochs at 96 px on the CPU, with the sliders (in %) when given."""
    panel.epochs.setValue(epochs)
    panel.imgsz.setValue(96)
    panel.device.setCurrentText("cpu")
    if p_obj is not None:
        panel.p_obj.setValue(p_obj)
    if p_box is not None:
        panel.p_box.setValue(p_box)


def dashed(window):
    return [i for i in window.view.scene().items() if i.data(0) == "detection"]


def settle(window, qtbot, change):
    """Make a confidence change and wait, as a user would, for the whole-video refresh after it."""
    with qtbot.waitSignal(window.state.confSettled, timeout=5000):
        change()


def detect_current_video(window, qtbot, stride=5):
    window.review.stride.setValue(stride)
    window.review.detect_button.click()
    with qtbot.waitSignal(window.review.worker.finished, timeout=60000):
        pass


def add_known_detections(window) -> list[int]:
    """Run "known": urchins at 0.9, 0.6 and 0.3 on one partial frame and at 0.95 on the next, where no
    label overlaps them; returns the two frames, the first one shown."""
    s, review = window.state, window.review
    p = s.project
    vid = p.videos("train")[0]["id"]
    s.set_video(vid)
    partial = [f["frame_index"] for f in p.labeled_frames(vid) if f["label_status"] == "partial"][:2]
    run = p.create_run("known", {})
    p.update_run("known", status="finished", weights="none.pt")
    urchin = p.species_id("fragile pink urchin")
    rows = [(partial[0], 0.9, (5, 5, 25, 25)), (partial[0], 0.6, (30, 5, 50, 25)),
            (partial[0], 0.3, (60, 5, 80, 25)), (partial[1], 0.95, (5, 5, 25, 25))]
    for frame, conf, box in rows:
        p.conn.execute("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (run, vid, frame, urchin, *box, conf))
    p.conn.executemany("INSERT INTO detected_frames VALUES (?, ?, ?)", [(run, vid, f) for f in partial])
    for frame in partial:  # make sure no label overlaps the hand-made boxes
        for b in p.boxes(vid, frame):
            if b["x1"] < 90 and b["y1"] < 30:
                p.delete_box(b["id"])
    s.reload()
    review.reload_runs()
    review.run.setCurrentText("known")
    s.set_frame(partial[0])
    return partial


def test_review_over_known_detections(window, qtbot):
    """Hand-made detections with known confidences: the slider filters the overlay, the counts and
    the missing-label finder; accept and reject work; double-click jumps to MaxN."""
    s, review = window.state, window.review
    partial = add_known_detections(window)
    settle(window, qtbot, lambda: review.conf.setValue(50))
    assert s.conf == 0.5 and review.conf_spin.value() == 0.5 and len(dashed(window)) == 2
    urchin_row = [review.video_counts.topLevelItem(i) for i in range(review.video_counts.topLevelItemCount())
                  if review.video_counts.topLevelItem(i).text(0) == "fragile pink urchin"][0]
    assert (urchin_row.text(1), urchin_row.text(2), urchin_row.text(4)) == ("2", str(partial[0]), "2")
    settle(window, qtbot, lambda: review.conf_spin.setValue(0.25))
    assert review.conf.value() == 25 and len(dashed(window)) == 3
    assert [x.confidence for x in review.suggestions] == [0.95, 0.9, 0.6, 0.3]
    settle(window, qtbot, lambda: review.conf.setValue(70))
    assert [x.confidence for x in review.suggestions] == [0.95, 0.9]
    vid = s.video["id"]
    review.missing.setCurrentItem(review.missing.topLevelItem(1))
    assert s.frame == partial[0] and s.highlight == (vid, partial[0], (5, 5, 25, 25))  # outlined, zoomed to
    review.accept()
    accepted = [b for b in s.project.boxes(vid, partial[0]) if b["source"] == "accepted"]
    assert [(b["x1"], b["x2"]) for b in accepted] == [(5, 25)]
    assert [x.confidence for x in review.suggestions] == [0.95]
    # the queue went on by itself: the next suggestion is chosen, shown and outlined
    assert review._current_suggestion().confidence == 0.95
    assert s.frame == partial[1] and s.highlight == (vid, partial[1], (5, 5, 25, 25))
    review.reject()
    assert review.suggestions == [] and s.highlight is None
    s.undo.undo()  # Reject is undoable: the suggestion is back
    assert [x.confidence for x in review.suggestions] == [0.95]
    s.undo.undo()  # and so is Accept
    assert [x.confidence for x in review.suggestions] == [0.95, 0.9]
    s.undo.redo()
    s.undo.redo()
    assert review.suggestions == []
    s.set_frame(0)
    assert review.jump_to_maxn("fragile pink urchin")
    assert s.frame == partial[0]  # at 0.7 both frames hold one urchin: MaxN is the earlier frame


def test_the_review_lists_show_species_names_whole(window, qtbot):
    """The counts and the finder fit their columns to the names, not to Qt's default width; the
    frame's species column stays put from frame to frame."""
    review = window.review
    partial = add_known_detections(window)
    settle(window, qtbot, lambda: review.conf.setValue(30))
    metrics = review.video_counts.fontMetrics()
    for tree, column in ((review.video_counts, 0), (review.frame_counts, 0), (review.missing, 2)):
        names = [tree.topLevelItem(i).text(column) for i in range(tree.topLevelItemCount())]
        assert names and tree.columnWidth(column) >= max(metrics.horizontalAdvance(n) for n in names)
    shown, steady = review.frame_counts.topLevelItemCount(), review.frame_counts.columnWidth(0)
    window.state.set_frame(partial[1] + 1)
    assert review.frame_counts.topLevelItemCount() != shown and review.frame_counts.columnWidth(0) == steady


@pytest.mark.parametrize("width, height", [(1600, 1000), (960, 600)])
def test_the_video_counts_show_every_number_without_scrolling_sideways(window, qtbot, width, height):
    """The panels open about a quarter of the window wide: at 1600 px the video's counts show each
    species whole beside its four numbers (at the 340 px they opened at before, Mean was cut and Present
    out of sight). At 960 px the species names give way, cut short with their tooltips whole, and the
    numbers stay in sight (they scrolled off to the right)."""
    review = window.review
    window.resize(width, height)
    qtbot.waitUntil(lambda: window.width() == width)
    window._project_opened()
    partial = add_known_detections(window)
    p = window.state.project  # and the demo's longest name, 12 of them in one frame
    p.conn.executemany("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                       "confidence) SELECT id, ?, ?, ?, ?, 40, ?, 60, 0.8 FROM runs WHERE name = 'known'",
                       [(window.state.video["id"], partial[0], p.species_id("White slipper sea cucumber"),
                         10 * i, 10 * i + 8) for i in range(12)])
    window.show_panel(review)
    settle(window, qtbot, lambda: review.conf.setValue(30))
    tree = review.video_counts
    items = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    qtbot.waitUntil(lambda: tree.viewport().width() > 250)
    assert tree.header().length() <= tree.viewport().width() and not tree.horizontalScrollBar().isVisible()
    widest = tree.fontMetrics().horizontalAdvance
    for column in range(1, tree.columnCount()):
        assert tree.columnWidth(column) >= max(widest(x.text(column)) for x in items + [tree.headerItem()])
    assert [x.toolTip(0) for x in items] == [x.text(0) for x in items]
    if width == 1600:
        assert tree.columnWidth(0) >= max(widest(x.text(0)) for x in items)


def test_slider_drag_counts_the_video_once(window, qtbot, monkeypatch):
    """While the slider moves, the frame follows each step; the video's counts, finder and timeline
    are computed once, at the threshold where it comes to rest."""
    import bpr.results.counts

    s, review = window.state, window.review
    partial = add_known_detections(window)
    settle(window, qtbot, lambda: review.conf.setValue(5))
    summaries = []
    real = bpr.results.counts.video_summary
    monkeypatch.setattr(bpr.results.counts, "video_summary",
                        lambda *a, **k: summaries.append(a[1].conf) or real(*a, **k))
    with qtbot.waitSignal(s.confSettled, timeout=5000):
        for value in range(6, 66):
            review.conf.setValue(value)
            assert len(dashed(window)) == sum(c >= value / 100 for c in (0.9, 0.6, 0.3))
        assert summaries == []
    assert summaries == [0.65]
    assert [x.confidence for x in review.suggestions] == [0.95, 0.9]
    assert (window.timeline.totals[partial[0]], window.timeline.totals[partial[1]]) == (1, 1)


def test_the_cli_and_the_app_keep_the_same_detections_by_default(window):
    """A video detected with `bpr detect` shows in the app what the app's own detection would keep."""
    import inspect

    from bpr.cli import build_parser
    from bpr.results.detect import detect

    kept = window.review.keep.value()
    assert build_parser().parse_args(["detect", "p"]).min_conf == kept
    assert inspect.signature(detect).parameters["min_conf"].default == kept
    assert kept * 100 == window.review.conf.minimum()  # the slider can show everything that was kept


@pytest.mark.slow
def test_detect_from_the_panel(make_window, trained_template, qtbot):
    """Real detection with the tiny (untrained) model, whose confidences stay below 0.01: keep and
    show from 0.0001 to see them."""
    window = make_window(trained_template)
    s, review = window.state, window.review
    assert review.run.currentText() == "tiny" and s.run == "tiny"
    s.set_video(s.project.videos("train")[0]["id"])
    review.keep.setValue(0.0001)
    detect_current_video(window, qtbot)
    assert s.project.conn.execute("SELECT count(*) FROM detected_frames").fetchone()[0] == 30
    settle(window, qtbot, lambda: review.conf_spin.setValue(0.0001))
    s.set_frame(5)
    assert len(dashed(window)) == len(s.detections()) > 0
    assert review.video_counts.topLevelItemCount() == 5  # every species the model looks for
    review.conf.setValue(99)
    assert len(dashed(window)) == 0
    # Then on every video, every 10th frame: the first video's are done already (every 5th).
    review.stride.setValue(10)
    assert review.progress.isHidden()  # idle, the bar would be an empty box
    review.detect_all_button.click()
    assert not review.detect_button.isEnabled() and review.cancel_button.isEnabled()
    assert not review.progress.isHidden()
    with qtbot.waitSignal(review.worker.finished, timeout=60000) as done:
        pass
    assert review.progress.isHidden()
    summary = done.args[0]
    assert (summary.videos, summary.frames, summary.skipped) == (4, 15 + 12 + 12, 15)
    assert s.project.conn.execute("SELECT count(*) FROM detected_frames").fetchone()[0] == 30 + 39
    assert review.detect_all_button.isEnabled() and not review.cancel_button.isEnabled()


@pytest.mark.slow
def test_detection_runs_in_its_own_process_and_stops_when_asked(make_window, trained_template, qtbot):
    """Loading the model on a thread of the app held the GIL for up to 640 ms at a time, freezing the
    window; in a process of its own it cannot. Cancel stops it there; detecting again goes on."""
    import multiprocessing

    window = make_window(trained_template)
    review, project = window.review, window.state.project
    total = sum(v["frame_count"] for v in project.videos() if v["status"] == "ok")
    children, progress = [], []
    review.stride.setValue(1)
    review.detect_all_button.click()
    review.worker.progress.connect(lambda done, _total, _message: (
        progress.append(done), children.extend(p.name for p in multiprocessing.active_children())))
    qtbot.waitUntil(lambda: bool(progress), timeout=120000)
    review.cancel_button.click()
    with qtbot.waitSignal(review.worker.finished, timeout=60000) as stopped:
        pass
    assert "bpr-detection" in children and stopped.args[0].cancelled
    done = project.conn.execute("SELECT count(*) FROM detected_frames").fetchone()[0]
    assert 0 < done < total
    review.detect_all_button.click()
    with qtbot.waitSignal(review.worker.finished, timeout=120000) as finished:
        pass
    assert (finished.args[0].skipped, finished.args[0].frames) == (done, total - done)


@pytest.mark.slow
def test_a_detection_process_that_dies_is_reported_and_the_app_goes_on(make_window, trained_template, qtbot):
    import multiprocessing
    import os
    import signal

    window = make_window(trained_template)
    review, errors = window.review, []
    review.show_error = lambda title, message, details: errors.append(message)
    review.stride.setValue(1)
    review.detect_all_button.click()
    killed = []

    def kill_the_child(*_):
        for child in multiprocessing.active_children():
            if child.name == "bpr-detection" and not killed:
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    review.worker.progress.connect(kill_the_child)
    with qtbot.waitSignal(review.worker.failed, timeout=120000):
        pass
    assert killed and errors == ["RuntimeError: the detection process ended unexpectedly (exit code -9); "
                                 "detecting again resumes where it stopped"]
    assert review.detect_all_button.isEnabled() and not review.cancel_button.isEnabled()


@pytest.mark.slow
def test_train_stop_resume_from_the_panel(window, qtbot):
    panel = window.train
    panel.model.setCurrentText("yolov5n.yaml")
    set_tiny_training(panel, 2, p_obj=75, p_box=25)
    config = panel.config()
    # the panel's data workers are `bpr train`'s default (2): the training process may start them now
    assert (config.rebalancing.p_obj, config.rebalancing.p_box, config.workers) == (0.75, 0.25, 2)
    stopped = []

    def stop_in_epoch_two(event):
        if event.kind == "batch" and event.epoch == 2 and not stopped:
            stopped.append(1)
            panel.stop_button.click()

    assert panel.progress.isHidden()  # idle, the bar would be an empty box
    window.resize(960, 600)
    window.show_panel(panel)
    area = panel.parentWidget().parentWidget()  # the panel's scroll area (app.window.VerticalScrollArea)

    def in_view(widget):
        top = widget.mapTo(area.widget(), widget.rect().topLeft()).y() - area.verticalScrollBar().value()
        return 0 <= top < area.viewport().height()

    assert not in_view(panel.curves)  # below the settings at this size
    panel.start_button.click()
    assert not panel.progress.isHidden()
    qtbot.waitUntil(lambda: in_view(panel.curves) and in_view(panel.progress))  # scrolled to the charts
    panel.worker.event.connect(stop_in_epoch_two)
    # limits, not targets: each wait took over a minute on 2 cores shared with two training runs
    with qtbot.waitSignal(panel.worker.cancelled, timeout=300000):
        pass
    assert panel.progress.isHidden()
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    assert "Resume" in panel.status.text()
    assert panel.runs.topLevelItem(0).text(1) == "cancelled"
    assert "measured drop: objectness" in panel.drop.text()
    assert panel.curves.map50[0] == [1]  # epoch 1's val mAP50, at epoch 1
    panel.runs.setCurrentItem(panel.runs.topLevelItem(0))
    assert panel.resume_button.isEnabled()
    panel.resume_button.click()
    with qtbot.waitSignal(panel.worker.finished, timeout=300000):
        pass
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.status.text() == "Training of run1 finished"  # not "run run1 finished"
    assert panel.runs.topLevelItem(0).text(1) == "finished"
    assert panel.runs.topLevelItem(0).text(3) == "2/2"
    assert panel.runs.topLevelItem(0).text(5) == "CPU"  # the processor that trained it
    assert window.review.run.findText("run1") >= 0


def test_a_training_error_is_shown_and_the_app_stays_up(window, qtbot, monkeypatch, tmp_path):
    errors = []
    monkeypatch.setattr(window, "show_error", lambda *args: errors.append(args))
    window.train.show_error = window.show_error
    window.train.model.setCurrentText("/nowhere/weights.pt")  # refused before a run is recorded
    window.train.start_button.click()
    with qtbot.waitSignal(window.train.worker.failed, timeout=120000):
        pass
    assert errors and "FileNotFoundError: model weights /nowhere/weights.pt not found" in errors[0][1]
    assert "failed" in window.train.status.text() and window.train.start_button.isEnabled()
    assert window.state.project.runs() == []
    broken = tmp_path / "broken.pt"  # fails once the run has started: recorded as failed
    broken.write_bytes(b"not a model")
    window.train.model.setCurrentText(str(broken))
    window.train.start_button.click()
    with qtbot.waitSignal(window.train.worker.failed, timeout=120000):
        pass
    assert len(errors) == 2 and window.state.project.runs()[-1].status == "failed"
    window.state.set_frame(5)  # still working
    assert window.view.pixmap_item.pixmap().width() == 640


@pytest.mark.slow
def test_a_killed_training_process_is_reported_and_resumable(window, qtbot, monkeypatch):
    """Out of memory or a segfault kills the training process outright: the app reports it, stays up,
    and the run can be resumed."""
    import os
    import signal

    errors = []
    monkeypatch.setattr(window, "show_error", lambda *args: errors.append(args))
    panel = window.train
    panel.show_error = window.show_error
    set_tiny_training(panel, 3)
    killed = []

    def kill_in_epoch_two(event):
        if event.kind == "batch" and event.epoch == 2 and not killed:
            killed.append(1)
            os.kill(panel.process.pid, signal.SIGKILL)

    panel.start_button.click()
    panel.worker.event.connect(kill_in_epoch_two)
    with qtbot.waitSignal(panel.worker.failed, timeout=180000):
        pass
    assert "ended unexpectedly (exit code -9)" in errors[0][1]
    run = window.state.project.runs()[-1]
    assert run.status == "failed" and "exit code -9" in run.error
    assert len(run.metrics) == 1  # epoch 1 was committed before the kill
    panel.runs.setCurrentItem(panel.runs.topLevelItem(0))
    panel.resume()
    with qtbot.waitSignal(panel.worker.finished, timeout=180000):
        pass
    assert window.state.project.runs()[-1].status == "finished"


@pytest.mark.slow
def test_end_to_end_through_the_ui(window, qtbot, tmp_path, _isolated_settings):
    """Open the demo, train one tiny epoch with both sliders on, detect, move the confidence slider,
    accept a suggested label, export counts and check the file."""
    import csv

    s, train, review = window.state, window.train, window.review
    set_tiny_training(train, 1, p_obj=50, p_box=30)
    train.start_button.click()
    with qtbot.waitSignal(train.worker.finished, timeout=180000):
        pass
    run = s.project.runs()[-1]
    assert run.status == "finished" and run.config["rebalancing"]["p_obj"] == 0.5
    assert review.run.currentText() == run.name
    s.set_video(s.project.videos("train")[0]["id"])
    review.keep.setValue(0.0001)  # the one-epoch model's confidences stay below 0.01
    detect_current_video(window, qtbot, stride=10)
    settle(window, qtbot, lambda: review.conf.setValue(50))
    assert dashed(window) == [] and review.suggestions == []
    settle(window, qtbot, lambda: review.conf_spin.setValue(0.0001))
    # a one-epoch model's guesses cover most of the frame: the finder suggests none of them
    assert dashed(window) and review.suggestions == []
    # as a model that has learned would find an animal nobody boxed (an empty corner of a partial frame)
    from bpr.results.evaluate import box_iou

    frame = next(f["frame_index"] for f in s.project.labeled_frames(s.video["id"]) if f["frame_index"] % 10 == 0
                 and f["label_status"] == "partial")
    s.set_frame(frame)
    labels = [[b["x1"], b["y1"], b["x2"], b["y2"]] for b in s.labels()]
    box = next(b for b in ((x, y, x + 28, y + 28) for x in range(0, 600, 40) for y in range(0, 320, 40))
               if not labels or box_iou(np.array([b], float), np.array(labels, float)).max() == 0)
    s.project.conn.execute(
        "INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, confidence) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0.9)", (s.project.run_id(run.name), s.video["id"], frame,
                                                   s.project.species_id("squat lobster"), *box))
    s.detectionsChanged.emit()
    assert [x.box for x in review.suggestions] == [box]
    review.missing.setCurrentItem(review.missing.topLevelItem(0))
    review.accept()
    assert any(b["source"] == "accepted" for b in s.labels())
    path = window.export_counts(per_frame=False, path=str(tmp_path / "counts.csv"))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["run"] for r in rows} == {run.name} and {r["threshold"] for r in rows} == {"0.0001"}
    assert {r["video"] for r in rows} == {s.video["id"]}
    assert sum(int(r["frames_counted"]) for r in rows) == len(rows) * 15
    assert "Wrote" in _isolated_settings[-1]
    assert "at confidence 0.0001" in _isolated_settings[-1]  # the threshold as set, not "0.00"


def test_a_record_of_outside_weights_lists_no_training_settings(window, tmp_path):
    from bpr.results.detect import detection_run

    weights = tmp_path / "other.pt"
    weights.write_bytes(b"")  # only recorded here, never loaded
    detection_run(window.state.project, weights=weights)
    window.train.reload_runs()
    row = window.train.runs.topLevelItem(0)
    assert [row.text(i) for i in range(6)] == ["weights:other", "finished", "-", "-", "-", "-"]


def test_an_image_folder_is_reviewed_as_one_sequence(make_window, tmp_path, qtbot, monkeypatch):
    """In an image set the counts are the folder's (MaxN at an image, which double-click opens) and
    the finder lists the unboxed animals of every image in it; choosing one opens its image, keeps it
    chosen, and accepting labels that image."""
    from PIL import Image

    from bpr.data.formats import write_batch
    from bpr.data.formats.common import ImportBatch, VideoRecord
    from bpr.data.store import Project

    batch = ImportBatch(species={"urchin": None})
    for i in range(4):
        Image.new("RGB", (64, 48)).save(tmp_path / f"img{i}.png")
        batch.videos.append(VideoRecord(f"set/img{i}", kind="image", path=tmp_path / f"img{i}.png",
                                        frame_count=1, width=64, height=48))
    batch.frames = [(f"set/img{i}", 0, "partial") for i in range(4)]
    with Project.create(tmp_path / "images") as p:
        write_batch(p, batch)
        run = p.create_run("known", {})
        p.update_run("known", status="finished", weights="none.pt")
        urchin = p.species_id("urchin")
        for image, conf, x in (("img1", 0.9, 2), ("img2", 0.8, 2), ("img2", 0.7, 30)):
            p.conn.execute("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                           "confidence) VALUES (?, ?, 0, ?, ?, 2, ?, 20, ?)", (run, f"set/{image}", urchin, x,
                                                                              x + 18, conf))
        p.conn.executemany("INSERT INTO detected_frames VALUES (?, ?, 0)", [(run, f"set/img{i}") for i in range(4)])
    window = make_window(tmp_path / "images")
    s, review = window.state, window.review
    review.run.setCurrentText("known")
    settle(window, qtbot, lambda: review.conf.setValue(50))
    assert s.video["id"] == "set/img0"
    assert review.video_counts_label.text().startswith("This image folder: set, 4 images")
    row = review.video_counts.topLevelItem(0)
    assert [row.text(c) for c in range(5)] == ["urchin", "2", "img2", "0.750", "2"]
    assert [(x.video_id, x.confidence) for x in review.suggestions] == \
        [("set/img1", 0.9), ("set/img2", 0.8), ("set/img2", 0.7)]
    assert review.jump_to_maxn("urchin") and s.video["id"] == "set/img2"

    review.missing.setCurrentItem(review.missing.topLevelItem(0))
    assert s.video["id"] == "set/img1" and window.videos.currentItem() is window.videos.item("set/img1")
    assert review.missing.currentItem() is review.missing.topLevelItem(0) and review.accept_button.isEnabled()
    review.accept()
    assert [(b["x1"], b["source"]) for b in s.project.boxes("set/img1", 0)] == [(2, "accepted")]
    assert [x.video_id for x in review.suggestions] == ["set/img2", "set/img2"]

    started = []  # detection covers the folder too
    monkeypatch.setattr("app.review_panel.Worker", lambda *args: started.append(args) or MagicMock())
    assert review.detect_button.text() == "Detect on this folder"
    review.detect_button.click()
    assert started[0][2]["videos"] == [f"set/img{i}" for i in range(4)] and started[0][2]["ray"] is None
    review._detect_buttons(detecting=False)  # (the stand-in worker never finishes)
    review.cluster.setText(" local ")  # on a Ray started on this machine (bpr.results.cluster)
    review.detect_button.click()
    assert started[1][2]["ray"] == "local"


def add_finished_run(project, name, map50s):
    project.create_run(name, {"epochs": 3, "rebalancing": {"p_obj": 0.5, "p_box": 0, "mode": "random"}})
    project.update_run(name, status="finished", metrics=[
        {"epoch": i + 1, "box_loss": 1.0 + i, "cls_loss": 2.0, "mAP50": m, "drop": {}, "time": 0}
        for i, m in enumerate(map50s)])


def test_picking_a_run_draws_its_stored_curves_and_a_reload_keeps_them(window, tmp_path):
    from bpr.data.store import Project

    p = window.state.project
    add_finished_run(p, "a", [0.1, 0.3, 0.2])
    add_finished_run(p, "b", [0.5, 0.6])
    panel = window.train
    panel.reload_runs()
    assert panel.curves.loss == ([], []) and panel.curves.map50 == ([], [])
    panel.runs.setCurrentItem(panel.runs.findItems("a", Qt.MatchFlag.MatchExactly, 0)[0])
    assert panel.curves.loss == ([1, 2, 3], [3.0, 4.0, 5.0]) and panel.curves.map50 == ([1, 2, 3], [0.1, 0.3, 0.2])
    panel.runs.setCurrentItem(panel.runs.findItems("b", Qt.MatchFlag.MatchExactly, 0)[0])
    assert panel.curves.map50 == ([1, 2], [0.5, 0.6])
    # drawn with axes: the mAP50 plot's x axis is the epoch, and each plot names its y
    window.show_panel(window.train)
    loss_curve, map_curve, _ = panel.curves.plots
    assert list(map_curve.getData()[0]) == [1, 2] and list(map_curve.getData()[1]) == [0.5, 0.6]
    map_plot = map_curve.getViewBox().parentItem()
    assert map_plot.getAxis("bottom").labelText == "epoch" and map_plot.getAxis("left").labelText == "val mAP50"
    assert loss_curve.getViewBox().parentItem().getAxis("left").labelText == "loss"
    window.state.reload()  # as after an import: the same run stays picked and drawn
    assert panel.runs.currentItem().text(0) == "b" and panel.curves.map50 == ([1, 2], [0.5, 0.6])
    with Project.create(tmp_path / "other") as other:
        add_finished_run(other, "b", [0.9, 0.8])
    window.open_project(tmp_path / "other")  # another project, even one with the same run names, starts blank
    assert panel.runs.currentItem() is None and panel.curves.map50 == ([], [])


def test_resume_goes_on_on_the_device_chosen_or_else_the_one_the_run_trained_on(window, qtbot, monkeypatch):
    """A run carried from a GPU machine resumes here on the Device chosen; left at auto, on its own."""
    import app.train_panel
    from bpr.learn.training import TrainingCancelled

    asked = []

    def recorded_train_job(folder, config, name, resume, progress, stop, on_event, on_process=None,
                           selftrain=None, device=None):
        asked.append((config, resume, device))
        raise TrainingCancelled("stopped")

    monkeypatch.setattr(app.train_panel, "train_job", recorded_train_job)
    add_finished_run(window.state.project, "carried", [0.1])
    window.state.project.update_run("carried", status="cancelled")
    panel = window.train
    panel.reload_runs()
    panel.runs.setCurrentItem(panel.runs.findItems("carried", Qt.MatchFlag.MatchExactly, 0)[0])
    for choice in ("auto", "cpu"):
        qtbot.waitUntil(panel.resume_button.isEnabled)  # the last attempt's end handled
        panel.device.setCurrentText(choice)
        panel.resume_button.click()
        qtbot.waitUntil(lambda: len(asked) == ("auto", "cpu").index(choice) + 1)
    assert asked == [(None, "carried", None), (None, "carried", "cpu")]


def test_a_run_resumed_on_another_machine_says_where_each_epoch_ran(window):
    """The dock is narrow: the row's tooltip holds what its cut-off columns say."""
    p = window.state.project
    add_finished_run(p, "moved", [0.1, 0.2, 0.3])
    gpu = {"bpr": "0.1", "ultralytics": "8", "torch": "2", "device": "NVIDIA H200"}
    metrics = p.run("moved").metrics
    for m, device in zip(metrics, ["NVIDIA H200", "NVIDIA H200", "CPU"]):
        m["software"] = dict(gpu, device=device)
    p.update_run("moved", metrics=metrics)
    window.train.reload_runs()
    row = window.train.runs.findItems("moved", Qt.MatchFlag.MatchExactly, 0)[0]
    assert row.text(5) == "NVIDIA H200 (epochs 1-2), CPU (3)"
    assert row.toolTip(0) == row.toolTip(5) == (
        "moved: finished\nBest val mAP50: 0.3000\nEpochs: 3/3\nMethod: BPR p_obj 0.5 p_box 0\n"
        "Trained on: NVIDIA H200 (epochs 1-2), CPU (3)")


def test_the_runs_list_fits_its_columns_to_what_they_hold(window, qtbot):
    """At the window's opening size a run's name, status, best val mAP50 and epochs show without
    scrolling, not cut off by the list's default column widths."""
    add_finished_run(window.state.project, "r1", [0.1, 0.3, 0.2])
    window.show_panel(window.train)
    window.train.reload_runs()
    qtbot.waitExposed(window)
    runs = window.train.runs
    header = runs.header()
    names = [runs.headerItem().text(i) for i in range(runs.columnCount())]
    for column in (names.index("Best val mAP50"), names.index("Epochs")):
        assert header.sectionViewportPosition(column) + header.sectionSize(column) <= runs.viewport().width()


def test_the_chart_says_what_it_will_show_until_a_run_has_data(qtbot):
    """No run: a line of text, not empty axes. Live batches: the loss at fractional epochs, so that it
    lines up with each epoch's val mAP50 on the shared epoch axis."""
    from app.train_panel import Curves

    chart = Curves()
    qtbot.addWidget(chart)
    chart.show()
    _, _, plot = chart.plots
    assert chart.placeholder.isVisible() and not plot.isVisible()
    assert chart.minimumHeight() == 0  # a line: the runs list below keeps the room
    for batch in (1, 2, 4):
        chart.add_batch(epoch=2, batch=batch, batches=4, loss=3.0)
    chart.add_epoch(2, 0.4)
    assert chart.loss[0] == [1.25, 1.5, 2.0] and chart.map50 == ([2], [0.4])
    assert plot.isVisible() and not chart.placeholder.isVisible()
    assert chart.minimumHeight() == chart.PLOTS_MIN_HEIGHT
    chart.clear()
    assert chart.placeholder.isVisible() and chart.minimumHeight() == 0


def test_the_train_panel_shows_the_described_defaults_ranges_and_help(qtbot):
    """The panel's widgets are made from bpr.config's descriptions: untouched, they give the settings
    `bpr train` gives without flags; each shows its option's help and range."""
    from PySide6.QtWidgets import QCheckBox, QComboBox, QSlider, QSpinBox

    from app.train_panel import PANEL_OPTIONS, TrainPanel
    from app.state import ProjectState
    from bpr.config import SelfTraining, TrainConfig, options

    panel = TrainPanel(ProjectState(), show_error=lambda *args: None)
    qtbot.addWidget(panel)
    assert panel.config() == TrainConfig() and panel.selftrain_settings() == SelfTraining()
    described = {o.name: o for o in options(TrainConfig) + options(SelfTraining)}
    for name in PANEL_OPTIONS:
        o, widget = described[name], getattr(panel, name)
        assert o.help[1:] in widget.toolTip()
        if isinstance(widget, QSlider):
            assert (widget.minimum(), widget.maximum()) == (round(o.low * 100), round(o.high * 100))
        elif isinstance(widget, QSpinBox):
            assert (widget.minimum(), widget.maximum()) == (o.low, o.high)
        elif isinstance(widget, QComboBox) and o.choices:
            assert tuple(widget.itemText(i) for i in range(widget.count())) == o.choices
        elif isinstance(widget, QCheckBox):
            assert widget.text() == o.label
    panel.p_obj.setValue(25)
    panel.partial_only.setChecked(False)
    assert panel.config().rebalancing.p_obj == 0.25 and not panel.config().rebalancing.partial_only


@pytest.mark.slow
def test_self_training_rounds_wait_for_the_review_of_their_pseudo_boxes(window, qtbot, truth_teacher, monkeypatch):
    """Self-training from the Train panel: round 0 trains, its pseudo-boxes are drawn dotted and listed
    first in the finder; a rejected one leaves the list for good, an accepted one becomes a label; then
    Continue rounds trains round 1 on what was kept, and the runs list names its teacher. The teacher
    detects with the demo's truth (a 1-epoch model finds nothing plausible), so the training runs here,
    in the test's process, rather than in a child process of its own."""
    import app.train_panel

    def here(fn, args, stop, on_message, name, on_process=None):
        return fn(*args, send=on_message, stop=stop)

    monkeypatch.setattr(app.train_panel, "in_child_process", here)
    panel, review, project = window.train, window.review, window.state.project
    set_tiny_training(panel, 1)
    assert not panel.pseudo_precision.isEnabled() and not panel.pseudo_precision_entry.isEnabled()  # labels only
    panel.method.setCurrentIndex(panel.method.findData("selftrain"))
    assert panel.rounds.isEnabled() and not panel.burn_in.isEnabled() and panel.pseudo_precision_entry.isEnabled()
    assert panel.weight_by_score.isEnabled()
    panel.pseudo_boxes.setChecked(False)  # the ignore band alone: nothing to weight, and the band stays on
    assert not panel.weight_by_score.isEnabled() and not panel.ignore_band.isEnabled()
    panel.pseudo_boxes.setChecked(True)
    panel.ignore_band.setChecked(False)  # the pseudo-boxes alone: no ignore score, and the boxes stay on
    assert not panel.ignore_conf.isEnabled() and not panel.pseudo_boxes.isEnabled()
    assert panel.weight_by_score.isEnabled()
    panel.ignore_band.setChecked(True)
    panel.rounds.setValue(1)
    panel.tta.setChecked(False)
    assert panel.pause_for_review.isChecked()
    labels_before = project.conn.execute("SELECT count(*) FROM boxes").fetchone()[0]
    panel.start_button.click()
    with qtbot.waitSignal(panel.worker.finished, timeout=300000):
        pass
    assert "Continue rounds" in panel.status.text() and not panel.continue_button.isHidden()
    assert [r.name for r in project.runs()] == ["selftrain1-r0"]  # round 1 waits

    pseudo = [s for s in review.suggestions if s.pseudo_id is not None]  # those of this video
    assert pseudo and review.suggestions[:len(pseudo)] == pseudo
    mined = len(project.pseudo_boxes(teacher="selftrain1-r0", kind="pseudo"))  # of every video
    first = review.missing.topLevelItem(0)
    assert "(pseudo-box, round 1)" in first.text(2)
    review.missing.setCurrentItem(first)  # goes to its frame, where it is drawn dotted
    assert window.state.frame == pseudo[0].frame_index
    dotted = [i for i in window.view.scene().items() if i.data(0) == "pseudo"]
    assert len(dotted) == sum(p.frame_index == pseudo[0].frame_index and p.video_id == pseudo[0].video_id
                              for p in pseudo)
    review.reject_button.click()
    assert all(s.pseudo_id != pseudo[0].pseudo_id for s in review.suggestions)
    review.missing.setCurrentItem(review.missing.topLevelItem(0))
    accepted = review._current_suggestion()
    review.accept_button.click()
    assert project.conn.execute("SELECT count(*) FROM boxes").fetchone()[0] == labels_before + 1
    assert all(s.pseudo_id != accepted.pseudo_id for s in review.suggestions)

    panel.continue_button.click()
    with qtbot.waitSignal(panel.worker.finished, timeout=300000):
        pass
    assert "self-training finished" in panel.status.text() and panel.continue_button.isHidden()
    row = panel.runs.findItems("selftrain1-r1", Qt.MatchFlag.MatchExactly, 0)[0]
    assert row.text(1) == "finished" and "self-training round 1 (teacher selftrain1-r0" in row.text(4)
    manifest = project.folder / "runs" / "selftrain1-r1" / "dataset" / "export.json"
    import json

    assert json.loads(manifest.read_text())["pseudo_boxes"] == mined - 2  # less the two reviewed


def test_a_run_that_has_not_learned_is_flagged_and_detection_asks_first(window, monkeypatch, tmp_path):
    """The runs list and the Review panel say it; Detect asks before running it; choosing a run sets
    the confidence to the threshold chosen on its val frames."""
    from PySide6.QtWidgets import QMessageBox

    p = window.state.project
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    for name, best in (("noise", 0.0), ("good", 0.7)):
        add_finished_run(p, name, [best])
        p.update_run(name, weights=str(weights), summary={"thresholds": {"overall": 0.3 if best else 0.02,
                                                                         "species": {}}})
    window.train.reload_runs()
    rows = {window.train.runs.topLevelItem(i).text(0): window.train.runs.topLevelItem(i) for i in range(2)}
    assert rows["noise"].text(2) == "0.0000 (not learned)" and rows["good"].text(2) == "0.7000"
    p.update_run("noise", status="running")
    window.train.reload_runs()
    assert window.train.runs.findItems("noise", Qt.MatchFlag.MatchExactly)[0].text(2) == "0.0000 (not learned yet)"
    p.update_run("noise", status="cancelled")  # resumable: it may learn yet
    window.train.reload_runs()
    assert window.train.runs.findItems("noise", Qt.MatchFlag.MatchExactly)[0].text(2) == "0.0000 (not learned yet)"
    p.update_run("noise", status="finished")
    review = window.review
    review.reload_runs()
    review.run.setCurrentText("good")
    assert review.not_learned.isHidden() and window.state.conf == pytest.approx(0.3)
    review.run.setCurrentText("noise")
    assert not review.not_learned.isHidden() and "has not learned" in review.not_learned.text()
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kw: asked.append(args[2]) or QMessageBox.StandardButton.No)
    review.detect()
    assert asked and "has not learned" in asked[0] and review.worker is None  # nothing started


def test_the_device_list_offers_all_gpus_for_ddp_training(window):
    from app.train_panel import device_choices

    names = {0: "NVIDIA H100", 1: "NVIDIA H100"}.get
    assert device_choices(1, names) == ["cuda:0 (NVIDIA H100)"]
    choices = device_choices(2, names)
    assert choices[-1] == "0,1 (all 2 GPUs, DDP)"
    panel = window.train
    panel.device.addItems(choices)
    panel.device.setCurrentText(choices[-1])
    assert panel.config().device == "0,1"
