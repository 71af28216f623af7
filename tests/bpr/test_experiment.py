"""The experiment command: settings, seeds, results written as runs finish, resumed after a stop."""

import json
import threading

import pytest

from bpr.experiment import (ExperimentSpec, _done, mosaic_epochs, plateau, run_experiment,
                            trained_and_evaluated_with, write_report)
from bpr.learn.training import TrainConfig, TrainingCancelled


def tiny_spec(data, out, **overrides):
    settings = dict(data=str(data), out=out, hide=0.5, p_obj=[0.75], p_box=[], both=[],
                    pseudo=[], combine=[], upper_bound=True, seeds=2, epochs=1, imgsz=96, batch=16, device="cpu",
                    workers=0)
    settings.update(overrides)
    return ExperimentSpec(**settings)


def test_default_settings_follow_the_paper(tmp_path):
    spec = ExperimentSpec(data="x", out=tmp_path)
    assert [s.name for s in spec.settings()] == [
        "baseline", "obj0.1", "obj0.25", "obj0.5", "obj0.75", "box0.25", "obj0.75+box0.25",
        "ignore", "pseudo", "selftrain1", "selftrain2", "ema", "selftrain1+obj0.25", "all-labels"]
    assert spec.settings()[-1].hide == 0 and spec.settings()[0].hide == 0.5
    by_name = {s.name: s for s in spec.settings()}
    assert [spec.round_of(by_name[n]) for n in ("baseline", "ignore", "selftrain2", "ema")] == [0, 1, 2, 0]
    config = spec.train_config(2, by_name["selftrain2"])
    assert (config.pseudo.teacher_run, config.pseudo.round, config.pseudo.pseudo_boxes) == ("selftrain1-seed2", 2, True)
    taught = {n: spec.train_config(0, by_name[n]).pseudo for n in ("ignore", "pseudo", "selftrain1")}
    assert {n: (p.pseudo_boxes, p.ignore_band) for n, p in taught.items()} == {
        "ignore": (False, True), "pseudo": (True, False), "selftrain1": (True, True)}  # the band, the boxes, both
    from bpr.learn.training import describe_method

    assert [describe_method(spec.train_config(0, by_name[n]).to_dict()) for n in ("pseudo", "ignore")] == [
        "self-training round 1 (teacher baseline-seed0; pseudo-boxes from the score 60% right on val)",
        "self-training round 1 (teacher baseline-seed0; ignored from 0.1)"]
    assert spec.train_config(0, by_name["ema"]).pseudo.burn_in == spec.epochs // 2
    assert spec.train_config(0, by_name["selftrain1+obj0.25"]).rebalancing.p_obj == 0.25
    with pytest.raises(ValueError, match="selftrain2 learns from selftrain1's runs"):
        ExperimentSpec(data="x", out=tmp_path, pseudo=["selftrain2"], combine=[])


def test_the_oracle_setting_ignores_the_hidden_boxes_of_its_seed(tmp_path):
    """--oracle adds hidden-ignored: trained on the baseline's labels, the hidden boxes as its ignore
    regions (a diagnostic). Only that setting, and only with boxes hidden."""
    from bpr.cli import build_parser
    from bpr.learn.training import describe_method

    assert "hidden-ignored" not in [s.name for s in ExperimentSpec(data="x", out=tmp_path).settings()]
    args = build_parser().parse_args(["experiment", "d.yaml", "--out", "o", "--oracle"])
    spec = ExperimentSpec(data="x", out=tmp_path, oracle=args.oracle)
    names = [s.name for s in spec.settings()]
    assert names[-2:] == ["hidden-ignored", "all-labels"]
    configs = {s.name: spec.train_config(1, s) for s in spec.settings()}
    assert [n for n, c in configs.items() if c.hidden_as_ignore] == ["hidden-ignored"]
    oracle = configs["hidden-ignored"]
    assert (oracle.hide_fraction, oracle.seed, oracle.pseudo.active) == (0.5, 1, False)
    assert describe_method(oracle.to_dict()) == "the hidden boxes ignored (an oracle)"
    extreme = ExperimentSpec(data="x", out=tmp_path, keep_per_image=1, oracle=True)
    config = extreme.train_config(0, extreme.settings()[-2])
    assert (config.hidden_as_ignore, config.keep_per_image, config.hide_fraction) == (True, 1, 0)
    with pytest.raises(ValueError, match="hidden_as_ignore needs hidden boxes"):
        TrainConfig(hidden_as_ignore=True)


def test_the_extreme_split_keeps_one_box_per_image_in_every_setting_but_the_upper_bound(tmp_path):
    from bpr.cli import build_parser
    from bpr.experiment import hidden_words

    spec = ExperimentSpec(data="x", out=tmp_path, keep_per_image=1)  # hides no fraction then
    configs = {s.name: spec.train_config(0, s) for s in spec.settings()}
    assert all(c.keep_per_image == 1 and c.hide_fraction == 0 for n, c in configs.items() if n != "all-labels")
    assert configs["all-labels"].keep_per_image == 0
    assert hidden_words(spec) == "all training boxes hidden but 1 per image"
    with pytest.raises(ValueError, match="hide_fraction and keep_per_image both hide training boxes"):
        ExperimentSpec(data="x", out=tmp_path, hide=0.5, keep_per_image=1)
    args = build_parser().parse_args(["experiment", "d.yaml", "--out", "o", "--keep-per-image", "1"])
    assert (args.hide, args.keep_per_image) == (None, 1)
    assert ExperimentSpec(data="x", out=tmp_path).hide == 0.5


def test_a_sweep_refuses_other_hyperparameters_and_unknown_settings(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps({"epochs": 60, "imgsz": 320, "p_obj": [0.5]}))
    with pytest.raises(ValueError, match="epochs 60 there, 100 now"):
        run_experiment(ExperimentSpec(data="x", out=out, epochs=100), on_message=lambda m: None)
    (out / "spec.json").write_text(json.dumps({"epochs": 60, "precision": "full"}))
    with pytest.raises(ValueError, match="precision 'full' there, 'auto' now"):
        run_experiment(ExperimentSpec(data="x", out=out, epochs=60), on_message=lambda m: None)
    (out / "spec.json").write_text(json.dumps({"epochs": 60, "imgsz": 320, "p_obj": [0.5]}))
    with pytest.raises(ValueError, match="no setting or run named obj0.3 in this experiment; its settings: "
                       "baseline, obj0.1"):
        run_experiment(ExperimentSpec(data="x", out=out, epochs=60), on_message=lambda m: None,
                       only=["baseline", "obj0.3"])
    with pytest.raises(ValueError, match=r"named obj0.5-seed3 in .* \(runs: SETTING-seedN, N below 3\)"):
        run_experiment(ExperimentSpec(data="x", out=out, epochs=60), on_message=lambda m: None,
                       only=["obj0.5-seed2", "obj0.5-seed3"])


def test_experiment_runs_in_seed_major_order(tmp_path):
    spec = ExperimentSpec(data="x", out=tmp_path, p_obj=[0.5], p_box=[], both=[], pseudo=[],
                          combine=[], seeds=2)
    assert [name for name, _, _ in spec.runs()] == [
        "baseline-seed0", "obj0.5-seed0", "all-labels-seed0", "baseline-seed1", "obj0.5-seed1", "all-labels-seed1"]
    assert [name for name, _, _ in spec.runs(["all-labels", "obj0.5-seed1"])] == [
        "all-labels-seed0", "obj0.5-seed1", "all-labels-seed1"]


def test_spec_json_is_replaced_whole_never_rewritten_in_place(tmp_path, monkeypatch):
    """Two streams of one sweep start together; one read spec.json while the other rewrote it and
    stopped on a JSON error. The new text is written beside it and swapped in: if the swap fails,
    the old file is still whole and no temporary file is left."""
    out = tmp_path / "exp"
    out.mkdir()
    saved = json.dumps({"epochs": 60, "p_obj": [0.5]})
    (out / "spec.json").write_text(saved)

    def swap_fails(source, target):
        raise OSError("disk full")
    monkeypatch.setattr("bpr.paths.os.replace", swap_fails)
    with pytest.raises(OSError, match="disk full"):
        run_experiment(ExperimentSpec(data="x", out=out, epochs=60, p_obj=[0.75]), on_message=lambda m: None)
    assert (out / "spec.json").read_text() == saved
    assert [p.name for p in out.iterdir()] == ["spec.json"]


def test_a_result_row_still_being_appended_is_left_for_later(tmp_path):
    """Another stream may be halfway through appending its row; a broken row before the last is an error."""
    rows = tmp_path / "results.jsonl"
    rows.write_text(json.dumps({"run": "baseline-seed0"}) + "\n" + '{"run": "obj0.75-se')
    assert list(_done(rows)) == ["baseline-seed0"]
    rows.write_text('{"run": "obj0.75-se\n' + json.dumps({"run": "baseline-seed0"}) + "\n")
    with pytest.raises(ValueError, match="results.jsonl, line 1, is not a result row"):
        _done(rows)


def test_whether_a_val_curve_has_flattened():
    """The last tenth of the epochs (3 at least) against the tenth before, worked out by hand."""
    rising = [0.0] * 20 + [0.10, 0.10, 0.10, 0.10, 0.12, 0.12, 0.12, 0.12]  # 28 epochs: windows of 3
    v = plateau(rising)
    assert (v.epochs_before, v.epochs_last) == ("23–25", "26–28")
    assert (v.before, v.last) == pytest.approx((0.32 / 3, 0.12)) and v.verdict == "still rising"
    v = plateau([0.0] * 80 + [0.40] * 10 + [0.41] * 10)  # 100 epochs: windows of 10, a 2.5 % rise
    assert (v.epochs_before, v.before, v.last, v.verdict) == ("81–90", 0.40, 0.41, "flat")
    assert plateau([0.0] * 50 + [0.005] * 10).verdict == "not learned"   # under 1 point
    assert plateau([0.3, None, 0.3, 0.3, 0.1, 0.1]).verdict == "flat"     # a fall is flat too; None is 0
    assert plateau([0.5] * 5) is None


def test_the_epochs_trained_without_mosaic_are_left_out_of_the_verdict(tmp_path):
    """ultralytics switches mosaic off for the last close_mosaic epochs, and val mAP50 steps up there
    (seen: 1.8 points at once after 30 level epochs). The verdict reads the epochs before the switch."""
    curve = [0.0] * 48 + [0.40] * 6 + [0.41] * 6 + [0.50] * 10   # 70 epochs, the last 10 without mosaic
    assert plateau(curve).verdict == "still rising"                 # read whole, the step looks like learning
    v = plateau(curve, mosaic_epochs=60)                             # 60 epochs: windows of 6
    assert (v.epochs_before, v.epochs_last, v.epochs_unmixed) == ("49–54", "55–60", "61–70")
    assert (v.before, v.last, v.unmixed) == pytest.approx((0.40, 0.41, 0.50)) and v.verdict == "flat"
    assert plateau(curve[:55], mosaic_epochs=60).epochs_unmixed is None   # stopped before the switch

    assert mosaic_epochs(ExperimentSpec(data="x", out=tmp_path, epochs=70)) == 60   # ultralytics' default 10
    assert mosaic_epochs(ExperimentSpec(data="x", out=tmp_path, epochs=70, extra={"close_mosaic": 0})) == 70
    assert mosaic_epochs(ExperimentSpec(data="x", out=tmp_path, epochs=5)) == 5   # mosaic off from the start

    row = {"run": "baseline-seed0", "setting": "baseline", "seed": 0, "p_obj": 0.0, "p_box": 0.0, "mode": "random",
           "hide": 0.5,
           "val_mAP50": 0.5, "test_mAP50": 0.5, "test_coco_mAP50": 0.5, "measured_obj_drop": None,
           "measured_box_drop": None, "val_curve_mAP50": curve}
    write_report(ExperimentSpec(data="x", out=tmp_path, epochs=70), [row])
    assert ("- seed 0: epochs 49–54: 40.00 points, epochs 55–60: 41.00 points: **flat**; then epochs 61–70, "
            "without mosaic: 50.00 points") in (tmp_path / "results.md").read_text()


def test_the_report_shows_the_late_val_curves_in_spans(tmp_path):
    """40 epochs, the last 10 without mosaic: spans of 2 epochs up to epoch 30, then 31–40 apart. With
    val mAP50 equal to the epoch's number in points, each span's mean is its middle epoch."""
    def row(setting, seed, p_obj):
        return {"run": f"{setting}-seed{seed}", "setting": setting, "seed": seed, "p_obj": p_obj, "p_box": 0.0,
                "mode": "random", "hide": 0.5, "val_mAP50": 0.3, "test_mAP50": 0.3, "test_coco_mAP50": 0.3,
                "measured_obj_drop": None, "measured_box_drop": None,
                "val_curve_mAP50": [e / 100 for e in range(1, 41)]}

    write_report(ExperimentSpec(data="x", out=tmp_path, epochs=40),
                 [row("obj0.75", 0, 0.75), row("baseline", 1, 0.0), row("baseline", 0, 0.0)])
    text = (tmp_path / "results.md").read_text()
    # the curves are ultralytics' per-epoch validation, not the table's bpr evaluate: the report says so
    assert "ultralytics' own validation of each epoch, which pads each frame by half a stride" in text
    assert "scored by `bpr evaluate`, which sees frames as `bpr detect` does at 320 px" in text
    assert ("| run | 21–22 | 23–24 | 25–26 | 27–28 | 29–30 | 31–40, no mosaic |\n|---|---|---|---|---|---|---|\n"
            "| baseline, seed 0 | 21.50 | 23.50 | 25.50 | 27.50 | 29.50 | 35.50 |\n"
            "| baseline, seed 1 | 21.50 | 23.50 | 25.50 | 27.50 | 29.50 | 35.50 |\n"
            "| obj0.75, seed 0 | 21.50 | 23.50 | 25.50 | 27.50 | 29.50 | 35.50 |\n") in text
    # the baseline's gain over itself is no result; obj0.75's is paired with baseline seed 0
    assert "| baseline | 0.0 | 0.0 | random | 2 | 30.0 ± 0.0 | 30.0 ± 0.0 | 30.0 ± 0.0 | – | – | – | – / – |" in text
    assert "| obj0.75 | 0.75 | 0.0 | random | 1 | 30.0 | 30.0 | 30.0 | 0.0 (0/1 seeds up) | – | – | – / – |" in text


def test_the_report_says_which_software_made_the_runs(tmp_path):
    """A sweep spans sittings; runs made under another ultralytics may not compare, and the table says so."""
    def row(run, software):
        return {"run": run, "setting": "baseline", "seed": int(run[-1]), "p_obj": 0.0, "p_box": 0.0,
                "mode": "random", "hide": 0.5, "val_mAP50": 0.1, "test_mAP50": 0.1, "test_coco_mAP50": 0.1,
                "measured_obj_drop": None, "measured_box_drop": None, "val_curve_mAP50": [0.1],
                **({"software": software} if software else {})}

    old = {"bpr": "0.1.0", "ultralytics": "8.4.1", "torch": "2.9.1"}
    new = {"bpr": "0.1.0", "ultralytics": "8.4.2", "torch": "2.9.1"}
    spec = ExperimentSpec(data="x", out=tmp_path, epochs=1, pseudo=[], combine=[])
    write_report(spec, [row("baseline-seed0", old), row("baseline-seed1", old)])
    assert ("\nFinished: 2 of 24 runs (8 settings x 3 seeds). Software: bpr 0.1.0, ultralytics 8.4.1, torch 2.9.1.\n"
            in (tmp_path / "results.md").read_text())

    write_report(spec, [row("baseline-seed0", None), row("baseline-seed1", old)])
    assert ("Software: bpr 0.1.0, ultralytics 8.4.1, torch 2.9.1. Not recorded for baseline-seed0.\n"
            in (tmp_path / "results.md").read_text())
    assert "Not in this table" not in (tmp_path / "results.md").read_text()

    # a sitting that leaves out a setting trained before (the oracle, without --oracle) says so
    write_report(spec, [row("baseline-seed0", old), {**row("hidden-ignored-seed0", old), "setting": "hidden-ignored"}])
    assert ("Not in this table: the finished runs of hidden-ignored (settings this sitting did not ask for)."
            in (tmp_path / "results.md").read_text())

    write_report(spec, [row("baseline-seed0", None), row("baseline-seed1", old), row("baseline-seed2", new)])
    assert ("**The runs were made with different software**, so they may not compare: "
            "bpr 0.1.0, ultralytics 8.4.1, torch 2.9.1: baseline-seed1; "
            "bpr 0.1.0, ultralytics 8.4.2, torch 2.9.1: baseline-seed2; "
            "not recorded: baseline-seed0.") in (tmp_path / "results.md").read_text()
    assert "In training" not in (tmp_path / "results.md").read_text()


def test_the_report_names_the_run_the_sweep_keeps_in_training(tmp_path):
    """A sweep stopped mid-run keeps that run in unfinished/ (to go on elsewhere); its report says which, and
    after which epoch, not only the finished rows."""
    row = {"run": "baseline-seed0", "setting": "baseline", "seed": 0, "p_obj": 0.0, "p_box": 0.0, "mode": "random",
           "hide": 0.5, "val_mAP50": 0.1, "test_mAP50": 0.1, "test_coco_mAP50": 0.1, "measured_obj_drop": None,
           "measured_box_drop": None, "val_curve_mAP50": [0.1]}
    for run, epochs in (("selftrain2-seed0", 142), ("ignore-seed0", 0)):
        (tmp_path / "unfinished" / run).mkdir(parents=True)
        (tmp_path / "unfinished" / run / "run.json").write_text(
            json.dumps({"metrics": [{"epoch": e} for e in range(1, epochs + 1)], "train_labels_sha256": None}))
    write_report(ExperimentSpec(data="x", out=tmp_path, epochs=200), [row])
    assert ("\nIn training, kept in `unfinished/` (the sweep's command goes on from there): ignore-seed0 after "
            "epoch 0 of 200, selftrain2-seed0 after epoch 142 of 200.\n") in (tmp_path / "results.md").read_text()


def test_the_report_names_runs_of_one_seed_that_trained_on_other_labels(tmp_path):
    """A sweep carried to a rebuilt project must hide the same boxes for a seed, or its gains compare
    different training sets."""
    def row(run, digest):
        return {"run": run, "setting": run.rsplit("-", 1)[0], "seed": int(run[-1]), "p_obj": 0.0,
                "p_box": 0.0, "mode": "random", "hide": 0.5, "val_mAP50": 0.1, "test_mAP50": 0.1,
                "test_coco_mAP50": 0.1, "measured_obj_drop": None, "measured_box_drop": None,
                "val_curve_mAP50": [0.1], **({"train_labels_sha256": digest} if digest else {})}

    spec = ExperimentSpec(data="x", out=tmp_path, epochs=1, pseudo=[], combine=[])
    write_report(spec, [row("baseline-seed0", None), row("obj0.75-seed0", None)])
    text = (tmp_path / "results.md").read_text()
    assert "Training labels:" not in text and "Not paired" not in text  # rows from before the checksum
    write_report(spec, [row("baseline-seed0", "a" * 64), row("obj0.75-seed0", "a" * 64),
                        row("baseline-seed1", "b" * 64), row("obj0.5-seed1", None)])
    assert ("Training labels: the runs of each seed trained on the same labels (checksum of the label "
            "files; 3 of 4 runs carry one).") in (tmp_path / "results.md").read_text()
    write_report(spec, [row("baseline-seed0", "a" * 64), row("obj0.75-seed0", "c" * 64),
                        row("obj0.5-seed0", "a" * 64), row("baseline-seed1", "b" * 64)])
    assert ("**Not paired**: runs of one seed trained on different labels, so their gains compare different "
            "training sets: baseline-seed0 and obj0.5-seed0 on labels aaaaaaaa; obj0.75-seed0 on labels "
            "cccccccc.") in (tmp_path / "results.md").read_text()


def test_a_row_says_which_epochs_of_a_run_ran_on_which_software():
    """A run resumed on another machine (a GPU lent for a while, then the laptop) says so in its row."""
    cpu = {"bpr": "0.1.0", "ultralytics": "8.4.190", "torch": "2.14.1", "device": "CPU"}
    gpu = {**cpu, "torch": "2.11.0", "device": "NVIDIA H200"}
    versions = {"bpr": "0.1.0", "ultralytics": "8.4.190"}

    def epochs(*spans):
        return [{"epoch": e, **({"software": used} if used else {})} for first, last, used in spans
                for e in range(first, last + 1)]

    assert trained_and_evaluated_with(epochs((1, 3, cpu)), cpu) == {**versions, "torch": "2.14.1"}
    assert trained_and_evaluated_with(epochs((1, 2, cpu), (3, 5, gpu)), gpu) == {
        **versions, "torch": "2.14.1 on the CPU for epochs 1-2, 2.11.0 on a GPU (NVIDIA H200) for epochs 3-5 "
                             "and evaluation"}
    assert trained_and_evaluated_with(epochs((1, 2, gpu)), cpu) == {
        **versions, "torch": "2.11.0 on a GPU (NVIDIA H200) for epochs 1-2, 2.14.1 on the CPU for evaluation"}
    same_torch = {**gpu, "torch": "2.14.1"}  # the same versions: the processor alone changed
    assert trained_and_evaluated_with(epochs((1, 2, same_torch), (3, 3, cpu)), cpu) == {
        **versions, "torch": "2.14.1",
        "device": "a GPU (NVIDIA H200) for epochs 1-2, the CPU for epoch 3 and evaluation"}
    before = trained_and_evaluated_with(epochs((1, 2, None), (3, 4, cpu)), cpu)  # epochs of an older bpr
    assert before["torch"] == "not recorded for epochs 1-2, 2.14.1 on the CPU for epochs 3-4 and evaluation"


def test_a_sweep_loads_its_evaluation_code_before_the_first_run(tmp_path):
    """A sweep trains for hours before it first evaluates; code changed on disk meanwhile (an upgrade,
    an edit) must not meet the modules already loaded. Seen: an ImportError after a 60-epoch run."""
    import subprocess
    import sys

    code = ("import sys, pathlib, bpr.experiment as e\n"
            "class Empty:\n"
            "    def run(self, name): raise e.NotFoundError(name)\n"
            "    def close(self): pass\n"
            "e._project = lambda spec: Empty()\n"
            "e.train = lambda *a, **k: sys.exit('detect loaded: %s' % ('bpr.results.detect' in sys.modules))\n"
            f"e.run_experiment(e.ExperimentSpec(data='x', out=pathlib.Path({str(tmp_path)!r})), on_message=print)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "detect loaded: True" in result.stderr, result.stderr


@pytest.fixture
def no_training(monkeypatch):
    """A sweep with an empty project that fails the test if it starts a run."""
    import bpr.experiment
    from bpr.data.store import NotFoundError

    class Empty:
        def run(self, name):
            raise NotFoundError(name)

        def close(self):
            pass

    monkeypatch.setattr(bpr.experiment, "_project", lambda spec: Empty())
    monkeypatch.setattr(bpr.experiment, "train", lambda *a, **k: pytest.fail("a run was started"))


def test_a_stop_asked_between_runs_starts_no_other_run(tmp_path, no_training):
    """Ctrl+C or SIGTERM while a finished run is evaluated: the sweep ends there, not one batch into
    the next run."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(TrainingCancelled, match="the sweep stopped before training baseline-seed0"):
        run_experiment(tiny_spec(tmp_path / "data.yaml", tmp_path / "exp"), on_message=print, cancel=stop.is_set)


def test_a_report_that_cannot_be_written_does_not_hide_why_the_sweep_stopped(tmp_path, no_training, monkeypatch):
    """The report is written also when a sweep stops; if that fails too (a full disk), the user must still
    see the stop, with the report's failure said beside it."""
    import bpr.experiment

    def no_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(bpr.experiment, "write_report", no_disk)
    messages = []
    with pytest.raises(TrainingCancelled, match="the sweep stopped before training baseline-seed0"):
        run_experiment(tiny_spec(tmp_path / "data.yaml", tmp_path / "exp"), on_message=messages.append,
                       cancel=lambda: True)
    assert messages[-1] == "the report was not written: No space left on device"


def test_a_sweep_at_another_split_takes_the_upper_bound_from_an_earlier_one(tmp_path, no_training):
    """The all-labels runs hide nothing: a sweep at 30 % hidden takes them from the one at 50 % instead
    of training them again, and refuses those of a sweep trained otherwise."""
    data = tmp_path / "data.yaml"
    data.write_text("")
    half = tiny_spec(data, tmp_path / "half")
    run_experiment(half, on_message=print, only=[])  # its spec.json
    with open(half.out / "results.jsonl", "a") as f:
        for seed in (0, 1):
            f.write(json.dumps({"run": f"all-labels-seed{seed}", "setting": "all-labels", "seed": seed, "hide": 0.0,
                                "p_obj": 0.0, "p_box": 0.0, "mode": "random", "val_mAP50": 0.3,
                                "test_mAP50": 0.3 + seed / 10, "test_coco_mAP50": 0.3, "val_curve_mAP50": [0.3],
                                "measured_obj_drop": None, "measured_box_drop": None}) + "\n")

    messages = []
    third = tiny_spec(data, tmp_path / "third", hide=0.3, upper_bound_from=half.out)
    rows = run_experiment(third, on_message=messages.append, only=["all-labels"])
    assert messages == [f"all-labels-seed{seed}: taken from {half.out}" for seed in (0, 1)]
    assert sorted((r["run"], r["test_mAP50"], r["taken_from"]) for r in rows) == [
        ("all-labels-seed0", 0.3, str(half.out)), ("all-labels-seed1", 0.4, str(half.out))]
    assert f"The all-labels runs were taken from `{half.out}`" in (third.out / "results.md").read_text()
    assert len(run_experiment(third, on_message=pytest.fail, only=["all-labels"])) == 2  # taken once

    longer = tiny_spec(data, tmp_path / "longer", epochs=2, upper_bound_from=half.out)
    with pytest.raises(ValueError, match="trained otherwise \\(epochs 1 there, 2 here\\)"):
        run_experiment(longer, on_message=print, only=["all-labels"])


def test_a_sweep_carried_elsewhere_finds_its_images_under_the_data_yaml_given(tmp_path):
    """The sweep folder and the data moved (another machine): the rerun, given the data.yaml's new
    place, links the project's images there, since evaluation and new runs read them."""
    import shutil

    from bpr.experiment import _project
    from tests.bpr.test_formats_yolo import make_dataset

    make_dataset(tmp_path / "first" / "data", "0 0.5 0.5 0.5 0.5\n")
    with _project(tiny_spec(tmp_path / "first/data/data.yaml", tmp_path / "first/sweep")) as project:
        assert project.resolve_path(project.video("train/images/a")["path"]).is_relative_to(tmp_path / "first")
    shutil.move(tmp_path / "first", tmp_path / "second")
    with _project(tiny_spec(tmp_path / "second/data/data.yaml", tmp_path / "second/sweep")) as project:
        assert project.resolve_path(project.video("train/images/a")["path"]) == \
            tmp_path / "second/data/train/images/a.jpg"


def test_a_run_another_process_trains_is_left_to_it(demo_template, tmp_path, other_process):
    """Two processes sharing a sweep whose settings overlap: the second skips the run the first trains."""
    import shutil

    from bpr.data.store import Project

    child, owner = other_process
    data = tmp_path / "demo"
    shutil.copytree(demo_template, data)
    with Project.open(data) as p:
        p.create_run("baseline-seed0", {})
        p.update_run("baseline-seed0", owner=owner)
    messages = []
    rows = run_experiment(tiny_spec(data, tmp_path / "exp", seeds=1), on_message=messages.append, only=["baseline"])
    assert rows == [] and messages == [f"skipping baseline-seed0: process {child.pid} is training it"]

    # one run named alone: the other seeds of its setting are left to other processes
    with Project.open(data) as p:
        p.create_run("baseline-seed1", {})
        p.update_run("baseline-seed1", owner=owner)
    messages = []
    rows = run_experiment(tiny_spec(data, tmp_path / "exp", seeds=2), on_message=messages.append,
                          only=["baseline-seed1"])
    assert rows == [] and messages == [f"skipping baseline-seed1: process {child.pid} is training it"]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_reports(demo_template, tmp_path):
    import shutil

    data = tmp_path / "demo"
    shutil.copytree(demo_template, data)
    out = tmp_path / "exp"
    stop = threading.Event()
    seen = []

    def stop_in_the_second_run(event):
        if event.kind == "start":
            seen.append(event.run)
        if len(seen) == 2 and event.kind == "batch":
            stop.set()

    with pytest.raises(TrainingCancelled):
        run_experiment(tiny_spec(data, out), on_message=lambda m: None, on_event=stop_in_the_second_run,
                       cancel=stop.is_set)
    first = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["run"] for r in first] == ["baseline-seed0"]

    # one setting alone, as a second process sharing the sweep would run it
    rows = run_experiment(tiny_spec(data, out), on_message=lambda m: None, only=["obj0.75"])
    assert sorted(r["run"] for r in rows) == ["baseline-seed0", "obj0.75-seed0", "obj0.75-seed1"]

    rows = run_experiment(tiny_spec(data, out), on_message=lambda m: None)
    names = sorted(r["run"] for r in rows)
    assert names == sorted(f"{s}-seed{k}" for s in ("baseline", "obj0.75", "all-labels") for k in (0, 1))
    obj = [r for r in rows if r["setting"] == "obj0.75"]
    assert all(0.6 < r["measured_obj_drop"] < 0.9 for r in obj)
    assert all(r["hide"] == 0 for r in rows if r["setting"] == "all-labels")
    import ultralytics
    assert {r["software"]["ultralytics"] for r in rows} == {ultralytics.__version__}
    assert all(set(r["software"]) == {"bpr", "ultralytics", "torch"} for r in rows)  # one machine: versions alone
    # each seed's runs trained on the same hidden boxes (all labels: one set), and the report says it checked
    digests = {}
    for r in rows:
        digests.setdefault((r["seed"], r["hide"]), set()).add(r["train_labels_sha256"])
    assert all(len(d) == 1 for d in digests.values())
    assert digests[0, 0.5] != digests[1, 0.5] and digests[0, 0.0] == digests[1, 0.0] != digests[0, 0.5]
    table = (out / "results.md").read_text()
    assert "Training labels: the runs of each seed trained on the same labels (checksum of the label files; " \
           "6 of 6 runs carry one)." in table
    assert "| baseline | 0.0 | 0.0 | random | 2 |" in table and "| obj0.75 |" in table
    obj_row = next(line for line in table.splitlines() if line.startswith("| obj0.75 |"))
    assert obj_row.endswith(f" | {sum(r['measured_obj_drop'] for r in obj) / 2:.2f} / – |")  # what was dropped
    assert "- seed 0: too few epochs to tell" in table and "- seed 1: too few epochs to tell" in table
    assert (out / "results.csv").exists() and (out / "mAP50_vs_drop.png").stat().st_size > 1000
    assert (out / "val_curves.png").stat().st_size > 1000
    # a third call has nothing to do
    again = run_experiment(tiny_spec(data, out), on_message=lambda m: pytest.fail(m))
    assert len(again) == 6


@pytest.mark.slow
def test_the_pseudo_label_settings_learn_from_their_seeds_teachers_and_report_it(demo_template, tmp_path,
                                                                                 truth_teacher):
    """selftrain1 and ignore learn from the baseline of their seed; the teacher's best.pt is kept, and a
    sweep carried elsewhere without the project trains selftrain2 from the kept teacher."""
    import shutil

    data = tmp_path / "demo"
    shutil.copytree(demo_template, data)
    out = tmp_path / "exp"
    spec = tiny_spec(data, out, seeds=1, p_obj=[], pseudo=["ignore", "selftrain1", "selftrain2", "ema"],
                     pseudo_conf=0.0, ignore_conf=0.0, burn_in=0, tta=False)
    rows = run_experiment(spec, on_message=lambda m: None, only=["baseline", "ignore", "selftrain1", "ema",
                                                                 "all-labels"])
    by = {r["setting"]: r for r in rows}
    assert by["selftrain1"]["teacher"] == by["ignore"]["teacher"] == "baseline-seed0"
    assert by["selftrain1"]["method"].startswith("self-training round 1 (teacher baseline-seed0")
    quality = by["selftrain1"]["teacher_pseudo_boxes"]
    assert quality["pseudo_boxes"] > 0 and quality["hidden_boxes"] > 0 and 0 <= quality["precision"] <= 1
    assert by["selftrain1"]["teacher_pseudo_conf"] == 0.0  # the sweep's fixed score
    assert by["ema"]["ema_teacher_last_epoch"]["pseudo_boxes"] > 0
    ema_quality = by["ema"]["ema_teacher_pseudo_boxes"]  # its best.pt, mining as a teacher would
    assert ema_quality["pseudo_boxes"] > 0 and ema_quality["hidden_boxes"] == quality["hidden_boxes"]
    assert by["ema"]["ema_teacher_pseudo_conf"] == 0.0
    assert all(r["test_count_mae"] >= 0 and 0 < r["count_conf"] <= 1 for r in rows)
    assert (out / "teachers" / "baseline-seed0.pt").exists()
    report = (out / "results.md").read_text()
    # the teacher scored as it taught: here the very run recorded as the baseline, so the same figures
    assert by["selftrain1"]["teacher_test_mAP50"] == by["baseline"]["test_mAP50"]
    assert by["selftrain1"]["teacher_test_count_mae"] == by["baseline"]["test_count_mae"]
    assert "gap won back" in report
    assert f"| baseline-seed0 | 1 | {by['baseline']['test_mAP50'] * 100:.1f} | " in report
    assert f"| ema-seed0 (its EMA model, best epoch) | online | {by['ema']['test_mAP50'] * 100:.1f} | " in report

    # carried to another machine: the results and the kept teachers, not the project's runs
    assert (out / "teachers" / "selftrain1-seed0.pt").exists()  # it teaches selftrain2
    moved, fresh = tmp_path / "moved", tmp_path / "fresh"
    moved.mkdir()
    shutil.copytree(demo_template, fresh)
    for name in ("results.jsonl", "spec.json", "teachers"):
        (shutil.copytree if (out / name).is_dir() else shutil.copy)(out / name, moved / name)
    messages = []
    carried = tiny_spec(fresh, moved, seeds=1, p_obj=[], pseudo=["ignore", "selftrain1", "selftrain2", "ema"],
                        pseudo_conf=0.0, ignore_conf=0.0, burn_in=0, tta=False)
    rows = run_experiment(carried, on_message=messages.append, only=["selftrain2"])
    assert any(m.startswith("selftrain1-seed0: using the kept") for m in messages), messages
    from bpr.data.store import Project

    with Project.open(fresh) as project, Project.open(data) as trained_there:
        restored, original = project.run("selftrain1-seed0"), trained_there.run("selftrain1-seed0")
        kept = restored.metrics  # up to the epoch its best.pt was saved at
        assert kept and [m["epoch"] for m in kept] == [m["epoch"] for m in original.metrics][:len(kept)]
        assert [m["mAP50"] for m in kept] == pytest.approx([m["mAP50"] for m in original.metrics[:len(kept)]],
                                                           abs=1e-5)  # its row and curves in the app
    assert not any(m.startswith("training baseline") or m.startswith("training selftrain1") for m in messages)
    [row] = [r for r in rows if r["setting"] == "selftrain2"]
    assert row["teacher"] == "selftrain1-seed0" and row["round"] == 2
    assert row["teacher_test_mAP50"] == by["selftrain1"]["test_mAP50"]  # the kept best.pt, restored


@pytest.mark.slow
def test_a_run_whose_machine_was_lost_goes_on_from_the_epoch_kept_in_the_sweep(demo_template, tmp_path):
    """After each epoch the sweep keeps the run's checkpoints and epoch records in unfinished/; a sweep
    carried without its project (the machine lost mid-run) resumes the run there, and the folder goes
    when the run finishes. Kept on other labels than it would train on here, it is refused."""
    import shutil

    from bpr.data.store import Project

    data, out = tmp_path / "demo", tmp_path / "exp"
    shutil.copytree(demo_template, data)
    spec = dict(seeds=1, epochs=3, p_obj=[], upper_bound=False)
    stop = threading.Event()

    def stop_after_the_second_epoch(event):
        if event.kind == "epoch" and event.epoch == 2:
            stop.set()

    with pytest.raises(TrainingCancelled):
        run_experiment(tiny_spec(data, out, **spec), on_message=lambda m: None, on_event=stop_after_the_second_epoch,
                       cancel=stop.is_set)
    kept = out / "unfinished" / "baseline-seed0"
    assert {f.name for f in kept.iterdir()} == {"run.json", "last.pt", "best.pt"}
    import torch

    assert torch.load(kept / "best.pt", weights_only=False)["optimizer"] is None  # only last.pt resumes
    assert torch.load(kept / "last.pt", weights_only=False)["optimizer"] is not None
    with Project.open(data) as project:
        there = project.run("baseline-seed0").metrics
    assert [m["epoch"] for m in json.loads((kept / "run.json").read_text())["metrics"]] == [1, 2]

    def carried(folder):  # the results, spec and kept runs, with a fresh copy of the data
        shutil.copytree(out, folder / "exp")
        shutil.copytree(demo_template, folder / "demo")
        return tiny_spec(folder / "demo", folder / "exp", **spec)

    elsewhere = carried(tmp_path / "elsewhere")
    messages, starts = [], []
    [row] = run_experiment(elsewhere, on_message=messages.append,
                           on_event=lambda e: starts.append(e.epoch) if e.kind == "start" else None)
    assert f"baseline-seed0: going on after epoch 2, kept in {elsewhere.out / 'unfinished/baseline-seed0'}" \
        in messages and starts == [3]
    with Project.open(elsewhere.data) as project:
        epochs = project.run("baseline-seed0").metrics
    assert [m["epoch"] for m in epochs] == [1, 2, 3] and epochs[:2] == there[:2]
    assert row["epochs"] == 3 and not (elsewhere.out / "unfinished" / "baseline-seed0").exists()

    other = carried(tmp_path / "other")
    saved = json.loads((other.out / "unfinished/baseline-seed0/run.json").read_text())
    (other.out / "unfinished/baseline-seed0/run.json").write_text(json.dumps(saved | {"train_labels_sha256": "x"}))
    with pytest.raises(ValueError, match="trained on other labels than it would here .* delete that folder"):
        run_experiment(other, on_message=lambda m: None)
