"""Pseudo-boxes and ignore regions: the mining rule by hand, their journey through the export and
ultralytics' augmentation, the store's review, the EMA teacher on a batch and in a run, and
self-training rounds (resumed after SIGKILL)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpr.config import PseudoLabels, SelfTraining, TrainConfig
from bpr.learn.loss import IGNORE_CLASS, read_weighted_class
from bpr.learn.pseudo import OnlineTeacher, add_teacher_rows, mine


def tiny_config(**pseudo):
    return TrainConfig(model="yolov5n.yaml", epochs=1, imgsz=96, batch=16, workers=0, device="cpu",
                       pseudo=PseudoLabels(**pseudo))


def test_the_mining_rule_by_hand():
    """Scores against the thresholds, IoU with labels and with rejected boxes (0.5 is 'the same box')."""
    label = [0.0, 0, 10, 10]
    boxes = torch.tensor([
        [0, 0, 10, 10],      # the label itself: 0.9 but not new
        [0, 0, 10, 4.9],     # IoU 0.49 with the label: a new animal
        [20, 20, 30, 30],    # far away, 0.7: pseudo
        [40, 40, 50, 50],    # 0.3: ignore region
        [60, 60, 70, 70],    # 0.05: nothing
        [80, 80, 90, 90],    # 0.8 but rejected before
        [0, 0, 10, 5]])      # IoU 0.5 with the label: the label
    scores = torch.tensor([0.9, 0.6, 0.7, 0.3, 0.05, 0.8, 0.6])
    labels, rejected = torch.tensor([label]), torch.tensor([[81.0, 80, 91, 90]])
    pseudo, ignore = mine(boxes, scores, labels, 0.1, 0.5, rejected)
    assert pseudo.tolist() == [False, True, True, False, False, False, False]
    assert ignore.tolist() == [False, False, False, True, False, False, False]
    # the score bounds are inclusive
    pseudo, ignore = mine(boxes[2:4], torch.tensor([0.5, 0.1]), labels, 0.1, 0.5)
    assert pseudo.tolist() == [True, False] and ignore.tolist() == [False, True]
    # the ignore band alone: everything from ignore_conf up that is not a label is ignored
    pseudo, ignore = mine(boxes, scores, labels, 0.1, None, rejected)
    assert not pseudo.any() and ignore.tolist() == [False, True, True, True, False, False, False]
    # nothing to compare with
    pseudo, ignore = mine(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 4), 0.1, 0.5)
    assert pseudo.shape == ignore.shape == (0,)
    with pytest.raises(ValueError, match="ignore_conf"):
        PseudoLabels(pseudo_conf=0.2, ignore_conf=0.3)


def store_rows(project):
    return project.conn.execute("SELECT * FROM boxes ORDER BY id").fetchall()


def teach(project, teacher, rows, round=1):
    """Store a teacher's findings as mining would: (kind, video, frame, species, box, score)."""
    project.replace_pseudo_boxes(teacher, round, [(*row, round) for row in rows])


def partial_frame(project):
    vid, frame, _ = project.split_frames("train", ("partial",))[0]
    return vid, frame, project.boxes(vid, frame)


def test_an_export_trains_on_the_pseudo_boxes_and_writes_ignore_regions_beside_the_labels(trained_project,
                                                                                            tmp_path):
    from bpr.data.dataset import IGNORE_FOLDER, PSEUDO_FOLDER, export_yolo

    project = trained_project
    vid, frame, labels = partial_frame(project)
    species = labels[0]["species_id"] if labels else project.species()[0]["id"]
    video = project.video(vid)
    teach(project, "tiny", [("pseudo", vid, frame, species, 5.0, 6.0, 25.0, 30.0, 0.8),
                            ("pseudo", vid, frame, species, 40.0, 40.0, 60.0, 50.0, 0.7),
                            ("ignore", vid, frame, species, 70.0, 10.0, 90.0, 20.0, 0.3)])
    before = store_rows(project)
    rejected = project.pseudo_boxes(teacher="tiny", kind="pseudo")[1]
    project.review_pseudo_box(rejected["id"], accept=False)

    plain = export_yolo(project, tmp_path / "plain")
    result = export_yolo(project, tmp_path / "taught", pseudo_from="tiny")
    assert (result.pseudo_boxes, result.ignore_regions) == (1, 1)
    assert result.boxes == plain.boxes and result.labels_sha256 == plain.labels_sha256  # pseudo-boxes are not labels
    stem = f"{vid.replace('/', '__')}_{frame:07d}"
    ours = (tmp_path / "taught/train/labels" / f"{stem}.txt").read_text().splitlines()
    theirs = (tmp_path / "plain/train/labels" / f"{stem}.txt").read_text().splitlines()
    w, h = video["width"], video["height"]
    assert ours[:len(theirs)] == theirs and len(ours) == len(theirs) + 1
    klass, *xywh = map(float, ours[-1].split())
    assert xywh == pytest.approx([15 / w, 18 / h, 20 / w, 24 / h], abs=1e-6)
    ignore = (tmp_path / "taught/train" / IGNORE_FOLDER / f"{stem}.txt").read_text().split()
    assert list(map(float, ignore[1:])) == pytest.approx([80 / w, 15 / h, 20 / w, 10 / h], abs=1e-6)
    assert not (tmp_path / "plain/train" / IGNORE_FOLDER).exists()
    assert store_rows(project) == before  # nothing of the labels changed
    assert json.loads((tmp_path / "taught/export.json").read_text())["pseudo_from"] == "tiny"
    # the ignore band alone: the pseudo-box is an ignore region too, and the labels are the plain ones
    alone = export_yolo(project, tmp_path / "alone", pseudo_from="tiny", pseudo_as_ignore=True)
    assert (alone.pseudo_boxes, alone.ignore_regions) == (0, 2)
    assert alone.labels_sha256 == plain.labels_sha256
    # the pseudo-boxes alone: the labels as taught, and no ignore region
    boxes_only = export_yolo(project, tmp_path / "boxes-only", pseudo_from="tiny", ignore_band=False)
    assert (boxes_only.pseudo_boxes, boxes_only.ignore_regions) == (1, 0)
    assert (tmp_path / "boxes-only/train/labels" / f"{stem}.txt").read_text().splitlines() == ours
    assert not (tmp_path / "boxes-only/train" / IGNORE_FOLDER).exists()
    # weighted by score: the pseudo-box beside the labels, its score last
    weighted = export_yolo(project, tmp_path / "weighted", pseudo_from="tiny", pseudo_weighted=True)
    assert (weighted.pseudo_boxes, weighted.ignore_regions) == (1, 1)
    assert (tmp_path / "weighted/train/labels" / f"{stem}.txt").read_text().splitlines() == theirs
    side = (tmp_path / "weighted/train" / PSEUDO_FOLDER / f"{stem}.txt").read_text().splitlines()
    assert side == [ours[-1] + " 0.800000"]


def test_a_teachers_finds_are_scored_against_the_boxes_hidden_from_it_by_hand(trained_project):
    """Precision, recall and the score-weighted precision of a mining against the hidden boxes: matched at
    IoU 0.5, one to one, most confident first."""
    from bpr.learn.training import export_manifest
    from bpr.selftrain import pseudo_quality

    project = trained_project
    frames = [(vid, frame, project.boxes(vid, frame)) for vid, frame, _ in project.split_frames("train", ("partial",))]
    vid, frame, labels = next(f for f in frames if len(f[2]) >= 2)
    hidden, kept = labels[0], labels[1]
    manifest = json.loads(export_manifest(project, "tiny").read_text())
    elsewhere = next(f[2][0] for f in frames if f[:2] != (vid, frame) and f[2])  # hidden, never found
    manifest["hidden_box_ids"] = [hidden["id"], elsewhere["id"]]
    export_manifest(project, "tiny").write_text(json.dumps(manifest))
    on_hidden = (hidden["x1"], hidden["y1"], hidden["x2"], hidden["y2"])
    on_kept = (kept["x1"], kept["y1"], kept["x2"], kept["y2"])  # a label the teacher was shown: not a find
    species = hidden["species_id"]
    teach(project, "tiny", [("pseudo", vid, frame, species, *on_hidden, 0.8),
                            ("pseudo", vid, frame, species, *on_hidden, 0.4),  # the same animal again: a miss
                            ("ignore", vid, frame, species, *on_kept, 0.2)])
    assert pseudo_quality(project, "tiny") == {"pseudo_boxes": 2, "hidden_boxes": 2, "precision": 0.5,
                                               "recall": 0.5, "score_precision": pytest.approx(0.8 / 1.2)}
    everything = pseudo_quality(project, "tiny", from_score=0.1)
    assert (everything["pseudo_boxes"], everything["precision"]) == (3, pytest.approx(1 / 3))
    assert everything["score_precision"] == pytest.approx(0.8 / 1.4)
    assert pseudo_quality(project, "tiny", from_score=0.5)["score_precision"] == 1.0


def test_ignore_regions_and_weighted_pseudo_boxes_ride_through_ultralytics_augmentation(trained_project, tmp_path):
    """An export's ignore regions and weighted pseudo-boxes become label rows of IGNORE_CLASS and of their
    weighted class in ultralytics' training dataset, and come out of its mosaic and flips with the image's
    boxes, still holding their species and score; the labels are as without them."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from bpr.data.dataset import export_yolo
    from bpr.learn.loss import WEIGHTED_BASE, read_weighted_class

    project = trained_project
    frames = project.split_frames("train", ("partial",))
    species = project.species()[0]["id"]
    rows = []
    for vid, frame, _ in frames:
        w, h = project.video(vid)["width"], project.video(vid)["height"]
        rows.append(("ignore", vid, frame, species, 0.0, 0.0, w / 2.0, h / 2.0, 0.3))
        rows.append(("pseudo", vid, frame, species, w * 0.6, h * 0.6, w * 0.9, h * 0.9, 0.4))
    teach(project, "tiny", rows)
    export = export_yolo(project, tmp_path / "taught", pseudo_from="tiny", pseudo_weighted=True)
    assert export.ignore_regions == export.pseudo_boxes == len(frames)
    data = check_det_dataset(str(export.data_yaml))
    args = get_cfg(overrides={"imgsz": 96, "mosaic": 1.0, "fliplr": 0.5})

    def dataset():
        return build_yolo_dataset(args, str(tmp_path / "taught/train/images"), 16, data, mode="train")

    plain, taught = dataset(), dataset()
    untaught = build_yolo_dataset(args, str(export_yolo(project, tmp_path / "plain").data_yaml.parent /
                                            "train/images"), 16, data, mode="train")
    assert add_teacher_rows(untaught) == 0  # no teacher: the dataset is ultralytics' own
    assert add_teacher_rows(taught) == 2 * len(frames)
    partial = set(export.partial_images)
    for before, after in zip(plain.labels, taught.labels):
        cls = after["cls"][:, 0]
        expected = int(Path(after["im_file"]).name in partial)
        assert (int((cls == IGNORE_CLASS).sum()), int((cls <= WEIGHTED_BASE).sum())) == (expected, expected)
        assert np.array_equal(after["cls"][cls >= 0], before["cls"])
    seen = {"ignore": 0, "pseudo": 0}
    for i in range(len(taught)):
        item = taught[i]
        assert item["cls"].shape[0] == item["bboxes"].shape[0]
        seen["ignore"] += int((item["cls"] == IGNORE_CLASS).sum())
        weighted = item["cls"][item["cls"] <= WEIGHTED_BASE]
        seen["pseudo"] += len(weighted)
        back, weight = read_weighted_class(weighted)
        assert (back == 0).all() and torch.allclose(weight, torch.full_like(weight, 0.4), atol=1e-4)
    assert seen["ignore"] > 0 and seen["pseudo"] > 0  # through the mosaic and flips, cropped away at times


def test_a_rejected_pseudo_box_is_never_used_again_and_an_accepted_one_becomes_a_label(trained_project,
                                                                                        truth_teacher):
    from bpr.selftrain import mine_round, pseudo_quality

    project = trained_project
    everything = tiny_config()
    labels_before = store_rows(project)
    first = mine_round(project, "tiny", 1, everything, tta=False)
    assert first.pseudo_boxes > 2 and first.new_pseudo_boxes == first.pseudo_boxes
    assert first.ignore_regions > 0  # the unboxed animals at 0.3
    quality = pseudo_quality(project, "tiny")  # the demo hides no boxes: none to find
    assert quality["hidden_boxes"] == 0 and quality["pseudo_boxes"] == first.pseudo_boxes
    # from another score: what that score would have given, ignore regions included
    assert pseudo_quality(project, "tiny", from_score=0.3)["pseudo_boxes"] == first.pseudo_boxes + first.ignore_regions
    assert pseudo_quality(project, "tiny", from_score=0.95)["pseudo_boxes"] == 0
    assert store_rows(project) == labels_before  # mining never touches a label
    found = project.pseudo_boxes(teacher="tiny", kind="pseudo")
    assert len(found) == first.pseudo_boxes and all(p["round"] == 1 for p in found)
    assert json.loads(json.dumps(project.summary()))["pseudo_boxes"]["pending"] == len(found)

    rejected, accepted = found[0], found[-1]
    project.review_pseudo_box(rejected["id"], accept=False)
    label_id = project.review_pseudo_box(accepted["id"], accept=True)
    label = project.box(label_id)
    assert label["source"] == "accepted" and label["species_id"] == accepted["species_id"]
    assert [label[k] for k in ("x1", "y1", "x2", "y2")] == [accepted[k] for k in ("x1", "y1", "x2", "y2")]
    with pytest.raises(ValueError, match="rejected already"):
        project.review_pseudo_box(rejected["id"], accept=True)

    again = mine_round(project, "tiny", 1, everything, tta=False)  # the same teacher mines again
    now = project.pseudo_boxes(teacher="tiny", kind="pseudo")
    from bpr.results.evaluate import box_iou

    def boxes(rows):
        return np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], float).reshape(-1, 4)

    here = [p for p in now if (p["video_id"], p["frame_index"]) == (rejected["video_id"], rejected["frame_index"])]
    assert not len(here) or box_iou(boxes([rejected]), boxes(here)).max() < 0.5
    where = [p for p in now if (p["video_id"], p["frame_index"]) == (accepted["video_id"], accepted["frame_index"])]
    assert not len(where) or box_iou(boxes([accepted]), boxes(where)).max() < 0.5  # it is a label now
    assert again.pseudo_boxes == len(now) < first.pseudo_boxes
    summary = project.summary()["pseudo_boxes"]
    assert (summary["accepted"], summary["rejected"]) == (1, 1)


def test_the_calibration_reports_its_last_val_frame(trained_project):
    """Its progress (the Train panel's, bpr selftrain's line) reaches n/n, which then ends the line:
    scoring stops reading detections at the last frame, so a count sent after a batch is handed on
    was never sent for the last batch (it stopped at 8/11)."""
    from bpr.results.detect import load_model
    from bpr.selftrain import teacher_pseudo_conf

    model, device = load_model(trained_project.resolve_path(trained_project.run("tiny").weights), "cpu")
    events = []
    teacher_pseudo_conf(trained_project, "tiny", model, device, 96, 0.6, tta=False, protocol="dusia", batch=8,
                        on_event=events.append)
    frames, _ = trained_project.readable_frames("val", ("full",))
    assert len(frames) % 8 and [(e.batch, e.batches) for e in events][-1] == (len(frames), len(frames))


def test_a_teacher_mines_at_the_size_asked_and_its_record_says_so(trained_project, monkeypatch):
    """mine_round's imgsz (benchmarks/teacher_scores.py --mine-at): the teacher detects at that size, not
    the one it trained at, and the record of its mining keeps it, so that a round asking for the usual
    mining mines again."""
    import bpr.results.detect
    from bpr.selftrain import mine_round, mined_already
    from tests.conftest import perfect_teacher

    sizes = []

    def recording_teacher(project, model, frames, imgsz=640, **kwargs):
        sizes.append(imgsz)
        return perfect_teacher(project, model, frames, imgsz, **kwargs)

    monkeypatch.setattr(bpr.results.detect, "predict_frames", recording_teacher)
    config = tiny_config(pseudo_conf=0.5)  # fixed: no calibration on val
    mine_round(trained_project, "tiny", 1, config, tta=False)
    assert mined_already(trained_project, "tiny", 1, config, tta=False)
    mine_round(trained_project, "tiny", 1, config, tta=False, imgsz=192)
    assert sizes == [96, 192]  # the size it trained at, then the one asked
    assert trained_project.run("tiny").summary["mined"]["imgsz"] == 192
    assert not mined_already(trained_project, "tiny", 1, config, tta=False)


class _Trainer:
    """What OnlineTeacher reads of an ultralytics trainer."""

    def __init__(self, model, epoch):
        from types import SimpleNamespace

        self.ema = SimpleNamespace(ema=model.eval())
        self.epoch, self.amp, self.device = epoch, False, torch.device("cpu")


def test_the_ema_teacher_adds_its_findings_on_partial_images_only_after_the_burn_in():
    from tests.bpr.test_loss import make_batch, tiny_model

    batch = make_batch(boxes_per_image=(2, 0, 1), size=96)
    batch["im_file"] = ["/d/train/images/p0.jpg", "/d/train/images/full.jpg", "/d/train/images/p2.jpg"]
    teacher = OnlineTeacher(PseudoLabels(teacher="ema", burn_in=3, pseudo_conf=0.0, ignore_conf=0.0),
                            partial_images={"p0.jpg", "p2.jpg"})
    model = tiny_model()
    assert teacher(_Trainer(model, epoch=2), batch) is batch  # in the burn-in: untouched
    taught = teacher(_Trainer(model, epoch=3), batch)
    index = taught["batch_idx"]
    assert torch.equal(index, index.sort(stable=True).values)  # each image's rows together
    assert (index == 1).sum() == (batch["batch_idx"] == 1).sum()  # nothing on the full image
    for i in (0, 2):
        assert (index == i).sum() > (batch["batch_idx"] == i).sum()
        # the labels are all still there
        original = batch["bboxes"][batch["batch_idx"] == i]
        mine_here = taught["bboxes"][index == i]
        assert all(any(torch.equal(row, other) for other in mine_here) for row in original)
    assert teacher.counts["pseudo_boxes"] == len(index) - len(batch["batch_idx"]) > 0
    weighted = OnlineTeacher(PseudoLabels(teacher="ema", burn_in=3, pseudo_conf=0.0, ignore_conf=0.0,
                                          weight_by_score=True), partial_images={"p0.jpg", "p2.jpg"})
    scored = weighted(_Trainer(model, epoch=3), batch)  # the same findings, each holding its score
    assert torch.equal(scored["bboxes"], taught["bboxes"])
    species, weight = read_weighted_class(scored["cls"])
    assert torch.equal(species, taught["cls"])
    assert int((weight < 1).sum()) == weighted.counts["pseudo_boxes"] == len(index) - len(batch["batch_idx"])
    ignore_only = OnlineTeacher(PseudoLabels(pseudo_boxes=False, ignore_conf=0.0), {"p0.jpg"})
    taught = ignore_only(_Trainer(model, epoch=50), batch)
    assert int((taught["cls"].view(-1) == IGNORE_CLASS).sum()) == ignore_only.counts["ignore_regions"] > 0
    # everything under the pseudo-box score: the band takes it, or, without the band, nothing does
    for band in (True, False):
        below = OnlineTeacher(PseudoLabels(pseudo_conf=1.0, ignore_conf=0.0, ignore_band=band), {"p0.jpg"})
        taught = below(_Trainer(model, epoch=50), batch)
        added = int((taught["cls"].view(-1) == IGNORE_CLASS).sum())
        assert added == below.counts["ignore_regions"] and (added > 0) == band
        assert len(taught["cls"]) == len(batch["cls"]) + added and below.counts["pseudo_boxes"] == 0


@pytest.mark.slow
def test_the_ema_teacher_trains_a_tiny_run_weighted_by_score_its_weights_plain_ultralytics(demo_project, no_network):
    from ultralytics import YOLO

    from bpr.learn.training import describe_method, train

    run = train(demo_project, tiny_config(teacher="ema", burn_in=0, pseudo_conf=0.0, ignore_conf=0.0,
                                          weight_by_score=True), name="ema")
    assert run.status == "finished"
    [epoch] = run.metrics
    assert epoch["teacher"]["pseudo_boxes"] > 0 and epoch["teacher"]["batches"] > 0
    assert describe_method(run.config).startswith("EMA teacher from epoch 0 (pseudo-boxes from 0 weighted by score")
    model = YOLO(str(demo_project.resolve_path(run.weights)))
    assert type(model.model).__name__ == "DetectionModel" and not hasattr(model.model, "teacher")
    assert no_network == []


@pytest.mark.slow
def test_the_ema_teacher_calibrates_at_each_validation_of_a_tiny_run(demo_project):
    """With the calibrated score (the default) the first epoch has no pseudo-box score yet; each later
    epoch uses the one read off the validation before it, and a resumed run starts from the last read."""
    import dataclasses

    from bpr.learn.trainer import PartialLabels
    from bpr.learn.training import run_folder, train

    config = dataclasses.replace(tiny_config(teacher="ema", burn_in=0, ignore_conf=0.0), epochs=2)
    run = train(demo_project, config, name="ema-calibrated")
    first, second = (epoch["teacher"] for epoch in run.metrics)
    assert first["pseudo_conf"] is None and 0.0 <= second["pseudo_conf"] <= 1.0
    assert second["pseudo_conf"] == first["calibrated"]
    assert second["calibrated"] is not None
    # the last validation read a score of its own (here as written; in a tiny run it often repeats)
    run.metrics[-1]["teacher"]["calibrated"] = 0.37
    demo_project.update_run(run.name, metrics=run.metrics)
    assert PartialLabels.of_run_folder(run_folder(demo_project, run.name)).teacher.calibrated == 0.37


@pytest.mark.slow
def test_a_student_trains_on_pseudo_boxes_weighted_by_score(trained_project, monkeypatch):
    """The teacher's pseudo-boxes go beside the labels with their scores, and reach the loss holding them."""
    import bpr.learn.loss as loss
    from bpr.learn.training import describe_method, run_dataset, train

    project = trained_project
    rows = []
    for vid, frame, _ in project.split_frames("train", ("partial",)):
        w, h = project.video(vid)["width"], project.video(vid)["height"]
        rows.append(("pseudo", vid, frame, project.species()[0]["id"], w * 0.6, h * 0.6, w * 0.9, h * 0.9, 0.4))
    teach(project, "tiny", rows)
    seen = []
    read = loss.read_weighted_class
    monkeypatch.setattr(loss, "read_weighted_class", lambda cls: seen.append(read(cls)[1]) or read(cls))
    run = train(project, tiny_config(teacher_run="tiny", round=1, weight_by_score=True), name="weighted")
    assert run.status == "finished" and "weighted by score" in describe_method(run.config)
    manifest = json.loads((run_dataset(project, "weighted") / "export.json").read_text())
    assert manifest["pseudo_boxes"] == len(rows) and manifest["pseudo_weighted"]
    weights = torch.cat([w.view(-1) for w in seen])
    assert torch.isclose(weights, torch.tensor(0.4), atol=1e-4).any() and weights.max() == 1.0


@pytest.mark.slow
def test_self_training_runs_offline(trained_project, no_network, truth_teacher):
    from ultralytics import YOLO

    from bpr.selftrain import selftrain

    result = selftrain(trained_project, tiny_config(), "st", SelfTraining(rounds=1, tta=True), from_run="tiny")
    [mined] = result.mining
    assert mined.pseudo_boxes > 0 and [r.name for r in result.runs] == ["tiny", "st-r1"]
    # calibrated on the fully labeled val frames, where the teacher scores each animal 0.8 and is right
    assert mined.pseudo_conf == 0.8 and "from score 0.8 " in str(mined)
    assert trained_project.run("tiny").summary["pseudo_conf"] == 0.8
    assert YOLO(str(trained_project.resolve_path(result.runs[-1].weights))).names
    assert no_network == []


@pytest.mark.slow
def test_self_training_rounds_resume_after_sigkill(trained_template, tmp_path):
    """`bpr selftrain` killed with SIGKILL inside round 1's training; the same command finishes it, each
    run names its teacher, no label was changed, and the rounds stop when a teacher finds nothing new."""
    import shutil

    from bpr.data.store import Project

    folder = tmp_path / "demo"
    shutil.copytree(trained_template, folder)
    with Project.open(folder) as project:
        labels = store_rows(project)
    argv = ["selftrain", str(folder), "--name", "st", "--from-run", "tiny", "--rounds", "2", "--no-tta",
            "--epochs", "2", "--imgsz", "96", "--workers", "0", "--device", "cpu"]
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); import bpr.results.detect as d; "
               "from tests.conftest import perfect_teacher; d.predict_frames = perfect_teacher; "
               f"from bpr.cli import main; sys.exit(main({argv!r}))"]
    env = dict(os.environ, YOLO_VERBOSE="False")
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in child.stdout:  # killed as round 1 trains its second epoch
        seen.append(line)
        if line.startswith("epoch 1/2"):
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    with Project.open(folder) as project:
        assert project.run("st-r1").status == "cancelled"  # its process is gone
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    with Project.open(folder) as project:
        r1 = project.run("st-r1")
        assert r1.status == "finished" and len(r1.metrics) == 2 and r1.config["pseudo"]["teacher_run"] == "tiny"
        manifest = json.loads((folder / "runs/st-r1/dataset/export.json").read_text())
        assert manifest["pseudo_from"] == "tiny" and manifest["pseudo_boxes"] > 0
        # round 2's teacher finds the same animals again: nothing new, so the rounds stop
        assert project.pseudo_boxes(teacher="st-r1") and "st-r2" not in {r.name for r in project.runs()}
        assert all(p["first_round"] == 1 for p in project.pseudo_boxes(teacher="st-r1", kind="pseudo"))
        assert store_rows(project) == labels
    assert "stopped early: round 2: st-r1 found no new pseudo-box" in done.stdout
    assert "self-training round 1 (teacher tiny" in done.stdout


def test_selftrain_takes_every_train_option_and_its_own(tmp_path):
    from bpr.cli import build_parser
    from bpr.config import options

    args = build_parser().parse_args(["selftrain", str(tmp_path), "--name", "a"])
    for o in options(TrainConfig) + options(SelfTraining):
        value = getattr(args, o.name)
        assert value == (o.default if o.name != "extra" else []), o.name
    args = build_parser().parse_args(["selftrain", str(tmp_path), "--name", "a", "--rounds", "3", "--no-tta",
                                      "--no-pseudo-boxes", "--p-obj", "0.25"])
    assert (args.rounds, args.tta, args.pseudo_boxes, args.p_obj) == (3, False, False, 0.25)


def test_a_teacher_is_calibrated_on_the_val_frames_of_its_protocol(trained_project, truth_teacher):
    """Calibrated on the fully labeled val frames; with none, a message that says what to do, unless the
    all-labeled protocol takes the partially labeled ones; a fixed score needs none."""
    import dataclasses

    from bpr.selftrain import Mining, mine_round

    trained_project.conn.execute("UPDATE frames SET label_status = 'partial' WHERE video_id IN "
                                 "(SELECT id FROM videos WHERE split = 'val') AND label_status = 'full'")
    trained_project.conn.commit()
    with pytest.raises(ValueError, match="needs fully labeled val frames.*--pseudo-conf"):
        mine_round(trained_project, "tiny", 1, tiny_config(), tta=False)
    assert mine_round(trained_project, "tiny", 1, dataclasses.replace(tiny_config(), protocol="all-labeled"),
                      tta=False).pseudo_conf == 0.8  # the demo's animals there are boxed, scored 0.8
    fixed = mine_round(trained_project, "tiny", 1, tiny_config(pseudo_conf=0.85), tta=False)
    assert fixed.pseudo_conf == 0.85 and not fixed.calibrated
    # a teacher never as right as asked gives no pseudo-box, and says why; a score fixed at 1 is the user's
    assert "never reach the pseudo-box precision" in str(Mining(1, "tiny", pseudo_conf=1.0, calibrated=True))
    assert "never" not in str(Mining(1, "tiny", pseudo_conf=1.0))


def test_the_ema_teacher_reads_its_pseudo_box_score_off_each_validation():
    """ultralytics' validation of the EMA model gives precision by confidence per species (p_curve at px);
    the teacher takes the lowest confidence where the species' mean reaches pseudo_precision, over the
    species detected there (past its top score a species reads precision 1, recall 0)."""
    from types import SimpleNamespace

    px = np.linspace(0, 1, 11)
    # two species: mean precision 0.3 .. 0.8 rising with confidence, then 1 past the top score
    p_curve = np.array([[0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1, 1, 1],
                        [0.4, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.8, 1, 1, 1]])
    r_curve = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0, 0, 0]] * 2)
    teacher = OnlineTeacher(PseudoLabels(teacher="ema", pseudo_precision=0.6), set())
    assert teacher.pseudo_conf is None  # before the first validation: no pseudo-box, the ignore band only
    teacher.calibrate(SimpleNamespace(px=px, p_curve=p_curve, r_curve=r_curve))
    assert teacher.pseudo_conf == pytest.approx(0.4)  # mean 0.6 first at 0.4
    # one species detected only below 0.25: from 0.3 it reads precision 1, recall 0; the other never
    # reaches 0.6. Averaged with those 1s, 0.3 would do (a mean of 0.7); over what was detected, no score does
    barely = SimpleNamespace(px=px, p_curve=np.array([[0.3, 0.3, 0.3, 1, 1, 1, 1, 1, 1, 1, 1],
                                                      [0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 1, 1]]),
                             r_curve=np.array([[0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0],
                                               [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0, 0]]))
    check = OnlineTeacher(PseudoLabels(teacher="ema", pseudo_precision=0.6), set())
    check.calibrate(barely)
    assert check.pseudo_conf == 1.0
    assert teacher.epoch_conf is None  # the epoch under way keeps the score it started with
    teacher.reset()
    assert teacher.epoch_conf == pytest.approx(0.4)
    nothing = np.zeros((0, 11))  # val had nothing to score
    teacher.calibrate(SimpleNamespace(px=px, p_curve=nothing, r_curve=nothing))
    assert teacher.pseudo_conf == 1.0
    fixed = OnlineTeacher(PseudoLabels(teacher="ema", pseudo_conf=0.3), set())
    assert fixed.pseudo_conf == 0.3
    ignore_only = OnlineTeacher(PseudoLabels(teacher="ema", pseudo_boxes=False), set(), calibrated=0.4)
    assert ignore_only.pseudo_conf is None
