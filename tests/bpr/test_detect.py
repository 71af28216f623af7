"""Detection over videos and image sets: storage, strides, resume after a cancel; evaluation end to end."""

import math

import pytest

from bpr.cli import main
from bpr.data.dataset import export_yolo
from bpr.results.detect import detect, detection_run, inference_size, load_model, predict_frames
from bpr.results.evaluate import evaluate
from bpr.data.formats import import_yolo


def stored(project, run_id, video):
    return project.conn.execute(
        "SELECT frame_index, species_id, round(x1, 2), round(y1, 2), round(confidence, 4) FROM detections "
        "WHERE run_id = ? AND video_id = ? ORDER BY 1, 2, 3, 4, 5", (run_id, video)).fetchall()


def test_detect_with_stride_then_resume_after_cancel(trained_project):
    p = trained_project
    video = p.videos("val")[0]
    calls = []

    def cancel_after_first_batch():
        calls.append(1)
        return len(calls) > 1

    first = detect(p, run="tiny", videos=[video["id"]], stride=5, batch=8, min_conf=0.001,
                   cancel=cancel_after_first_batch)
    assert first.cancelled and first.frames == 8
    second = detect(p, run="tiny", videos=[video["id"]], stride=5, batch=8, min_conf=0.001)
    expected_frames = math.ceil(video["frame_count"] / 5)
    assert not second.cancelled and second.skipped == 8 and second.frames == expected_frames - 8
    run_id = p.run("tiny").id
    frames = [f for (f,) in p.conn.execute(
        "SELECT frame_index FROM detected_frames WHERE run_id = ? ORDER BY 1", (run_id,))]
    assert frames == list(range(0, video["frame_count"], 5))
    assert detect(p, run="tiny", videos=[video["id"]], stride=5).frames == 0  # nothing left to do

    # The resumed result equals predicting every frame in one go.
    model, device = load_model(p.resolve_path(p.run("tiny").weights), "cpu")
    direct = list(predict_frames(p, model, [(video, f) for f in frames], imgsz=96, conf=0.001, device=device))
    assert sum(len(s) for _, s, _ in direct) == first.detections + second.detections > 0
    names = {s["name"] for s in p.species()}
    assert set(model.names.values()) <= names


def test_detect_range_and_errors(trained_project):
    p = trained_project
    video = p.videos("test")[0]
    summary = detect(p, run="tiny", videos=[video["id"]], start=10, stop=20, batch=4)
    assert summary.frames == 10 and summary.videos == 1
    with pytest.raises(ValueError, match="stride"):
        detect(p, run="tiny", stride=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        detect(p, weights="/nowhere/best.pt")
    with pytest.raises(Exception, match="no video"):
        detect(p, run="tiny", videos=["nope"])


def test_detect_with_outside_weights_over_an_image_set(trained_project, tmp_path):
    """Images imported from a YOLO dataset are single-frame videos; outside weights get a run record."""
    p = trained_project
    export_yolo(p, tmp_path / "yolo")
    import_yolo(p, tmp_path / "yolo" / "data.yaml")
    images = [v["id"] for v in p.videos() if v["kind"] == "image"][:6]
    weights = p.resolve_path(p.run("tiny").weights)
    summary = detect(p, weights=weights, videos=images, batch=4)
    assert summary.run == "weights:best" and summary.frames == summary.images == summary.videos == 6
    assert p.run("weights:best").status == "finished"
    with pytest.raises(FileNotFoundError, match="model weights .*nowhere.pt not found"):
        detect(p, weights=tmp_path / "nowhere.pt")
    assert "weights:nowhere" not in [r.name for r in p.runs()]


def test_each_outside_model_gets_its_own_record_though_every_run_names_its_file_best_pt(project, tmp_path):
    """Only recorded here, never loaded: the record is chosen by the file's content, not its name."""
    first, second = tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt"
    for path, content in ((first, b"model a"), (second, b"model b")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert detection_run(project, weights=first).name == "weights:best"
    assert detection_run(project, weights=second).name == "weights:best-2"
    assert detection_run(project, weights=first).name == "weights:best"  # the same model again: resumes
    moved = tmp_path / "kept" / "best.pt"
    moved.parent.mkdir()
    second.rename(moved)
    record = detection_run(project, weights=moved)  # the same model, elsewhere: still its record
    assert record.name == "weights:best-2" and project.resolve_path(record.weights) == moved
    assert len(project.runs()) == 2


def test_the_inference_size_defaults_to_the_size_the_weights_were_trained_at(trained_project):
    model, _ = load_model(trained_project.resolve_path(trained_project.run("tiny").weights), "cpu")
    assert inference_size(model) == 96 and inference_size(model, 160) == 160


def test_evaluate_a_run_on_full_frames(trained_project, tmp_path):
    p = trained_project
    result = evaluate(p, p.resolve_path(p.run("tiny").weights), split="val", imgsz=96,
                      pr_curve=tmp_path / "pr.png")
    summary = p.summary()["splits"]["val"]
    assert (result.images, result.boxes) == (summary["frames"], summary["boxes"])
    for way in ("coco", "ultralytics"):
        assert set(result.__dict__[way]) == {"mAP50", "mAP50-95"}
        assert 0 <= result.__dict__[way]["mAP50"] <= 1
    assert len(result.per_class) == 5 and (tmp_path / "pr.png").stat().st_size > 1000


def test_evaluation_says_how_many_frames_it_left_out(trained_project, capsys):
    """Frames whose file is gone are not scored, and the evaluation says how many: a figure over fewer
    frames than the split holds must not pass for the split's."""
    p = trained_project
    weights = p.resolve_path(p.run("tiny").weights)
    full = evaluate(p, weights, split="val", imgsz=96)
    assert full.left_out == 0
    p.conn.execute("INSERT INTO videos (id, kind, split, path, status, frame_count) "
                   "VALUES ('gone', 'video', 'val', 'nowhere.mp4', 'ok', 10)")
    for frame in (0, 5):
        p.set_frame_status("gone", frame, "full")
    result = evaluate(p, weights, split="val", imgsz=96)
    assert (result.images, result.left_out) == (full.images, 2)
    assert p.video("gone")["status"] == "missing"
    assert result.coco == full.coco
    assert main(["evaluate", str(p.folder), "--run", "tiny", "--split", "val"]) == 0
    assert "warning: 2 fully labeled frame(s) left out, without their file (find the files with `bpr link-" \
        in capsys.readouterr().out
