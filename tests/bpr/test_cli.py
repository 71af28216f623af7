"""The bpr command: each subcommand end to end, and clear errors with exit code 1."""

import argparse
import json

import pytest

from bpr.cli import build_parser, main
from tests.bpr.test_formats_yolo import make_dataset
from tests.conftest import shared


def test_demo_then_info_json(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "demo"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"videos", "boxes", "species", "frames", "splits", "missing_videos"} <= set(info)
    assert set(info["frames"]) == {"partial", "full"}
    assert set(info["splits"]) == {"train", "val", "test"}
    assert set(info["splits"]["train"]) == {"videos", "images", "frames", "boxes"}
    assert info["videos"] == 4 and info["images"] == 0 and info["boxes"] == sum(info["species"].values())
    assert main(["info", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "videos: 4 (0 missing, 0 unreadable)" in out and "val  : 1 video, " in out and "image" not in out
    # the demo's tracks box frames between its labeled ones too: the count says which are used
    on_labeled = sum(s["boxes"] for s in info["splits"].values())
    assert 0 < on_labeled < info["boxes"]
    assert f"boxes: {info['boxes']} ({on_labeled} on labeled frames; training and evaluation use only those" in out


def test_an_image_dataset_is_counted_in_images(tmp_path, capsys):
    """Image datasets are stored as one-frame videos; the user reads about images."""
    data = make_dataset(tmp_path / "data", "0 0.5 0.5 0.5 0.5\n")
    project = str(tmp_path / "p")
    assert main(["import", "yolo", str(data), "--project", project]) == 0
    assert "images: 1 (1 new, 0 without a file)" in capsys.readouterr().out
    assert main(["info", project]) == 0
    out = capsys.readouterr().out
    assert "images: 1 (0 missing, 0 unreadable)" in out and "train: 1 image, 1 labeled frames" in out
    assert "boxes: 1\n" in out  # every box on a labeled frame: nothing to explain
    assert "video" not in out


def test_a_mixed_import_counts_videos_and_images_apart():
    from bpr.data.formats.common import ImportReport

    report = ImportReport(videos=3, videos_new=3, images=2, missing_videos=["clip"])
    assert report.lines()[0] == "videos: 1, images: 2 (3 new, 1 without a file)"
    assert ImportReport().lines()[0] == "videos: 0 (0 new, 0 without a file)"


def test_import_dusia_and_export(tmp_path, capsys):
    project = str(tmp_path / "p")
    assert main(["import", "dusia", str(shared("dusia_annotations")), "--project", project]) == 0
    out = capsys.readouterr().out
    assert "boxes: 140460 added" in out and "warning: 6 video(s)" in out
    # No video files: the export has nothing to write, and says why.
    assert main(["export-yolo", project, str(tmp_path / "out")]) == 1
    assert "no labeled frames with a readable image or video" in capsys.readouterr().err


def test_import_yolo_export_with_hidden_boxes(tmp_path, capsys):
    project = str(tmp_path / "p")
    assert main(["import", "yolo", str(shared("brittlestar", "data.yaml")), "--project", project]) == 0
    assert main(["export-yolo", project, str(tmp_path / "out"), "--hide-fraction", "0.5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "train: 800 images" in out and "hidden from train:" in out


def test_bad_input_exits_1_with_a_message_and_creates_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotations><meta>")
    assert main(["import", "cvat", str(bad), "--project", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bpr import: error:") and "bad.xml: line 1" in err
    assert not (tmp_path / "p").exists()
    assert main(["info", str(tmp_path / "nowhere")]) == 1
    assert "is not a project" in capsys.readouterr().err


def test_help_everywhere(capsys):
    for argv in (["--help"], ["import", "--help"], ["import", "dusia", "--help"], ["export-yolo", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--hide-fraction" in capsys.readouterr().out


def test_every_argument_of_every_command_says_what_it_is():
    undocumented = []

    def walk(parser, command):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                undocumented.append(f"{command} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "bpr")
    assert undocumented == []


def test_hide_fraction_must_be_a_fraction(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export-yolo", str(tmp_path), str(tmp_path / "o"), "--hide-fraction", "1.5"])
    assert "not a fraction" in capsys.readouterr().err


def test_further_ultralytics_arguments_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--train-arg", "nbs"])
    assert "write KEY=VALUE" in capsys.readouterr().err
    data = tmp_path / "data.yaml"  # never read: the arguments are refused first
    assert main(["experiment", str(data), "--out", str(tmp_path / "exp"), "--train-arg", "epochs=3"]) == 1
    assert "epochs: set by the trainer (or by its own option)" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_an_unknown_only_name_is_refused_before_the_plan_is_printed(tmp_path, capsys):
    data = tmp_path / "data.yaml"  # never read: the name is refused first
    assert main(["experiment", str(data), "--out", str(tmp_path / "exp"), "--only", "obj0.5,box0.3"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "no setting or run named box0.3 in this experiment" in err
    assert not (tmp_path / "exp").exists()


def test_the_command_line_starts_without_torch_or_ultralytics():
    """Building the parser (every command, `bpr --help`) must not import them: `bpr info` would wait
    seconds for them, and `bpr train` quiets ultralytics' own output before it is first imported."""
    import subprocess
    import sys

    code = ("import sys, bpr.cli\nbpr.cli.build_parser()\n"
            "print(sorted({'torch', 'ultralytics'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_train_and_runs(demo_template, tmp_path, capsys):
    import shutil

    project = tmp_path / "demo"
    shutil.copytree(demo_template, project)
    argv = ["train", str(project), "--epochs", "1", "--imgsz", "96", "--batch", "16", "--workers", "0",
            "--p-obj", "0.75", "--p-box", "0.25", "--all-frames", "--name", "cli",
            "--train-arg", "nbs=16", "--train-arg", "mosaic=0.5"]
    assert main(argv) == 0
    args = (project / "runs" / "cli" / "train" / "args.yaml").read_text()
    assert "\nnbs: 16\n" in args and "\nmosaic: 0.5\n" in args
    out = capsys.readouterr().out
    assert "run cli: finished, 1/1 epochs" in out and "method: BPR p_obj 0.75 p_box 0.25 (all frames)" in out
    assert "measured drop (last epoch): objectness 0.7" in out and "\n  trained on CPU\n" in out
    assert main(["runs", str(project)]) == 0
    assert "BPR p_obj 0.75 p_box 0.25 (all frames)" in capsys.readouterr().out
    assert main(["train", str(project), "--name", "cli", "--epochs", "1"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["train", str(project), "--resume", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    # a setting given with --resume would be ignored: refused, naming it, before anything runs
    assert main(["train", str(project), "--resume", "cli", "--epochs", "5", "--train-arg", "nbs=8"]) == 1
    assert ("--epochs, --train-arg: run cli goes on with the settings it started with"
            in capsys.readouterr().err)
    assert (project / "runs" / "cli" / "train" / "args.yaml").read_text() == args  # untouched


def test_a_run_summary_says_when_the_ema_teacher_never_reached_its_precision(project, capsys):
    """Calibrated, a score of 1 means no pseudo-box: the teacher's detections on val never got that
    precision (as self-training's round line says); a score fixed at 1 by the user is just that."""
    from bpr.cli import _print_run
    from bpr.config import PseudoLabels, TrainConfig

    epoch = {"epoch": 1, "mAP50": 0.0, "drop": {}, "teacher": {"pseudo_boxes": 0, "ignore_regions": 3,
                                                                 "pseudo_conf": 1.0}}
    for name, fixed in (("calibrated", None), ("fixed", 1.0)):
        config = TrainConfig(epochs=1, pseudo=PseudoLabels(teacher="ema", pseudo_conf=fixed))
        project.create_run(name, config.to_dict())
        project.update_run(name, status="finished", metrics=[epoch])
        _print_run(project.run(name))
    calibrated, fixed = capsys.readouterr().out.split("run fixed:")
    never = "0 pseudo-boxes from score 1 (its detections on val never reached the pseudo-box precision), 3 ignore"
    assert never in calibrated and "never reached" not in fixed and "0 pseudo-boxes from score 1, 3 ignore" in fixed


@pytest.mark.slow
def test_a_run_carried_from_a_gpu_machine_resumes_on_the_device_given(demo_project, capsys):
    """Its record names a GPU this machine lacks: the resume says so and how; --device trains the rest
    here, as ultralytics' resume allows, and the record keeps the device."""
    from tests.bpr.test_training import cancel_in_second_epoch

    cancel_in_second_epoch(demo_project, "carried")
    demo_project.update_run("carried", config={**demo_project.run("carried").config, "device": "cuda:7"})
    project = str(demo_project.folder)
    assert main(["train", project, "--resume", "carried"]) == 1
    assert "run carried trained on cuda:7; resume it on another (--device" in capsys.readouterr().err
    assert demo_project.run("carried").status == "cancelled"  # nothing recorded by the refusal
    assert main(["train", project, "--resume", "carried", "--device", "cpu"]) == 0
    run = demo_project.run("carried")
    assert run.status == "finished" and run.config["device"] == "cpu"
    assert [m["epoch"] for m in run.metrics] == [1, 2]


@pytest.mark.slow
def test_detect_evaluate_counts_and_exports(trained_template, tmp_path, capsys):
    import csv
    import shutil

    project = tmp_path / "p"
    shutil.copytree(trained_template, project)
    p = str(project)
    assert main(["detect", p, "--run", "tiny", "--stride", "10", "--batch", "8", "--min-conf", "0.001"]) == 0
    out, err = capsys.readouterr()
    assert "detection run tiny: done; 54 frames of 4 videos in" in out
    assert "warning: run tiny has not learned (best val mAP50 " in err  # one epoch at 96 px: as the app warns
    assert main(["evaluate", p, "--run", "tiny", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "mAP50    COCO" in out and "ultralytics" in out and " at 96 px" in out
    weights = next((project / "runs" / "tiny").rglob("best.pt"))
    assert main(["evaluate", p, "--weights", str(weights), "--split", "val"]) == 0  # its size from the weights
    assert " at 96 px" in capsys.readouterr().out
    assert main(["detect", p, "--weights", str(weights), "--stride", "100"]) == 0
    assert main(["runs", p]) == 0
    out = capsys.readouterr().out
    assert "detection run weights:best: done" in out and f"outside weights {weights}" in out
    assert main(["counts", p, "--run", "tiny", "--conf", "0.01", "--csv", str(tmp_path / "s.csv"),
                 "--per-frame", str(tmp_path / "f.csv")]) == 0
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 5  # every video x every species the model looks for, found or not
    assert {r["run"] for r in rows} == {"tiny"} and {r["threshold"] for r in rows} == {"0.01"}
    assert main(["counts", p, "--labels"]) == 0
    assert "MaxN" in capsys.readouterr().out
    assert main(["export", "viame", p, str(tmp_path / "viame")]) == 0
    assert main(["export", "coco", p, str(tmp_path / "labels.json")]) == 0
    assert main(["export", "coco", p, str(tmp_path / "dets.json"), "--run", "tiny"]) == 0
    csv_file = sorted((tmp_path / "viame").glob("*.csv"))[0]
    assert main(["import", "viame", str(csv_file), "--project", str(tmp_path / "q"),
                 "--video-id", csv_file.stem]) == 0
    assert "boxes:" in capsys.readouterr().out
    n = len(csv_file.read_text().splitlines()) - 2
    assert main(["import", "viame", str(csv_file), "--project", str(tmp_path / "q"),
                 "--video-id", csv_file.stem, "--replace"]) == 0
    assert f"boxes: 0 removed, 0 added, {n} unchanged: the file's boxes are now the labels there" in (
        capsys.readouterr().out)
    assert main(["counts", p]) == 1
    assert "give --run RUN" in capsys.readouterr().err


@pytest.mark.parametrize("first", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_once_stops_cleanly_twice_interrupts_and_the_handlers_are_restored(first):
    import os
    import signal

    from bpr.cli import _graceful_stop

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with _graceful_stop("stopping") as stop:
        os.kill(os.getpid(), getattr(signal, first))
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_sweep_stopped_by_a_signal_ends_its_run_cleanly_and_says_how_to_continue(tmp_path, monkeypatch,
                                                                                   capsys):
    """`kill` of a background sweep, or a cluster's time limit: the run stops after its batch."""
    import os
    import signal

    import bpr.experiment
    from bpr.data.store import NotFoundError
    from bpr.learn.training import TrainingCancelled

    class Empty:
        def run(self, name):
            raise NotFoundError(name)

        def close(self):
            pass

    def train(project, config, name, on_event, cancel):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-batch; the trainer checks after it
        assert cancel()
        raise TrainingCancelled(f"run {name} cancelled at epoch 1, batch 3/50")

    monkeypatch.setattr(bpr.experiment, "_project", lambda spec: Empty())
    monkeypatch.setattr(bpr.experiment, "train", train)
    argv = ["experiment", str(tmp_path / "data.yaml"), "--out", str(tmp_path / "exp"), "--only", "baseline-seed0"]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 130
    out, err = capsys.readouterr()
    assert "stopping after this batch" in err
    assert "run baseline-seed0 cancelled at epoch 1, batch 3/50; the same command continues the sweep" in out


def test_a_reader_that_leaves_early_gets_no_traceback(project):
    """`bpr info P | head -1`: the pipe closes before bpr writes; bpr stops quietly, as Unix tools do."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "bpr.cli", "info", str(project.folder)], stdout=write,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


def test_runs_says_how_long_a_running_run_has_left(project, capsys):
    """From the median epoch: the night between two sittings of a resumed run is not training time."""
    from bpr.config import TrainConfig

    project.create_run("long", TrainConfig(epochs=100).to_dict())
    ends = [0, 90, 180, 270, 40_000, 40_090]  # a pause before the 5th epoch
    project.update_run("long", metrics=[{"epoch": i + 1, "mAP50": 0.005, "time": t} for i, t in enumerate(ends)])
    assert main(["runs", str(project.folder)]) == 0
    line = capsys.readouterr().out.rstrip()
    assert line.endswith(", 90 s an epoch, about 2.4 h left")  # 94 epochs
    assert line.split()[1] == "running" and "0.0050 (not learned yet)" in line  # its val mAP50 under 1 point
    project.update_run("long", status="cancelled")
    assert main(["runs", str(project.folder)]) == 0
    out = capsys.readouterr().out  # stopped there: resumable, so said so, and not learned yet
    assert "left" not in out and out.split()[1] == "cancelled" and "0.0050 (not learned yet)" in out
    project.update_run("long", status="finished")
    assert main(["runs", str(project.folder)]) == 0
    assert "0.0050 (not learned)  " in capsys.readouterr().out


def test_runs_line_up_and_say_which_processors_trained_them(project, capsys):
    """A run resumed on another machine says which epochs ran where; one older than the record says
    nothing of it."""
    from bpr.config import TrainConfig

    gpu = {"bpr": "0.1", "ultralytics": "8", "torch": "2", "device": "NVIDIA H200"}
    cpu = dict(gpu, device="CPU")
    for name, software in [("a-long-run-name", [gpu, gpu, cpu]), ("b", [cpu]), ("old", [None])]:
        project.create_run(name, TrainConfig(epochs=3).to_dict())
        metrics = [{"epoch": i + 1, "mAP50": 0.1} | ({"software": s} if s else {}) for i, s in enumerate(software)]
        project.update_run(name, status="finished", metrics=metrics)
    assert main(["runs", str(project.folder)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["a-long-run-name"].endswith(", on NVIDIA H200 (epochs 1-2), CPU (3)")
    assert lines["b"].endswith("best val mAP50 0.1000  labels only, on CPU")
    assert lines["old"].endswith("best val mAP50 0.1000  labels only")
    assert len({line.index(" finished") for line in lines.values()}) == 1  # the columns line up


def test_the_cli_reference_is_what_the_parser_says():
    """docs/cli.md is written from the parser (scripts/cli_reference.py); it must not drift from it."""
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    assert (ROOT / "docs" / "cli.md").read_text() == reference.render(), \
        "docs/cli.md is out of date: run python scripts/cli_reference.py"


def test_what_an_import_left_out_is_in_its_report_and_in_bpr_info(tmp_path, capsys):
    """The import says what it left out at once; `bpr info` says so later, from the project's log of
    imports. With --strict the same file is refused and nothing is made."""
    csv_path = tmp_path / "dive.csv"
    csv_path.write_text("0,v.mp4,1,10,10,50,50,1,-1,urchin,1\n1,v.mp4,2,10,50,50,10,1,-1,urchin,1\n")
    project = tmp_path / "p"
    assert main(["import", "viame", str(csv_path), "--project", str(project), "--strict"]) == 1
    assert "dive.csv: line 2: box with no area (x2 <= x1 or y2 <= y1); a strict import refuses the source" \
        in capsys.readouterr().err
    assert not project.exists()
    assert main(["import", "viame", str(csv_path), "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "boxes: 1 added" in out
    assert f"left out: {csv_path}: 1 box with no area (x2 <= x1 or y2 <= y1) left out (line 2)" in out
    assert main(["info", str(project)]) == 0
    out = capsys.readouterr().out
    assert "left out by imports (1 of 1 left something out):" in out
    assert f"viame {csv_path}:" in out and "1 box with no area" in out
    assert main(["info", str(project), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imports"] == 1 and summary["left_out"][0]["format"] == "viame"
