"""BPR training end to end on the demo project: events, store records, cancel, resume, crash, offline."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bpr.learn.loss import Rebalancing
from bpr.learn.training import (TrainConfig, TrainingCancelled, match_optimizer_state_layout, resolve_device, software,
                          train)


def tiny_config(**overrides):
    settings = dict(model="yolov5n.yaml", epochs=1, imgsz=96, batch=16, workers=0, device="cpu",
                    rebalancing=Rebalancing(p_obj=0.5, p_box=0.25))
    settings.update(overrides)
    return TrainConfig(**settings)


def cancel_in_second_epoch(project, name):
    """Train a 2-epoch run on the CPU and cancel it at the first batch of epoch 2, leaving epoch 1's last.pt."""
    stop = threading.Event()

    def on_event(event):
        if event.kind == "batch" and event.epoch == 2 and event.batch == 1:
            stop.set()

    with pytest.raises(TrainingCancelled, match="epoch 2, batch 1/"):
        train(project, tiny_config(epochs=2), name=name, on_event=on_event, cancel=stop.is_set)


def adam_betas(checkpoint):
    """The betas of each optimizer parameter group stored in an ultralytics checkpoint."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["optimizer"]
    return [tuple(group["betas"]) for group in state["param_groups"]]


@pytest.mark.slow
def test_train_validate_predict_offline_and_plain_checkpoint(demo_project, no_network, tmp_path):
    import torch

    events, threads = [], []
    run = train(demo_project, tiny_config(), name="tiny",
                on_event=lambda e: (events.append(e), threads.append(torch.get_num_threads())))
    assert run.status == "finished" and run.error is None
    # ultralytics' own choice, cores - 1, would compute on one thread of two cores
    assert set(threads) == {max(1, min(8, os.cpu_count() - 1), min(2, os.cpu_count()))}
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "epoch" in kinds
    batches = [e for e in events if e.kind == "batch"]
    assert [e.batch for e in batches] == list(range(1, batches[0].batches + 1))
    assert batches[-1].eta_s == pytest.approx(0, abs=1e-6)
    [epoch] = run.metrics
    assert epoch["epoch"] == 1 and "mAP50" in epoch and "cls_loss" in epoch
    drop = epoch["drop"]
    assert drop["negatives"] > 0 and 0.4 < drop["obj_drop_fraction"] < 0.6
    assert 0.1 < drop["box_drop_fraction"] < 0.4
    assert run.summary["best"].keys() >= {"mAP50", "mAP50-95"}
    weights = demo_project.resolve_path(run.weights)
    assert weights.name == "best.pt" and weights.exists()

    # prediction, still offline
    from ultralytics import YOLO

    image = next((demo_project.folder / "runs" / "tiny" / "dataset" / "val" / "images").iterdir())
    results = YOLO(str(weights)).predict(str(image), imgsz=96, verbose=False)
    assert len(results) == 1
    assert no_network == []

    # The checkpoint is plain ultralytics: `yolo predict` in a process that never imports bpr.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=os.environ["YOLO_CONFIG_DIR"])
    yolo = shutil.which("yolo", path=os.path.dirname(sys.executable))
    result = subprocess.run(
        [yolo, "predict", f"model={weights}", f"source={image}", "imgsz=96", f"project={tmp_path}",
         "name=pred", "save=False"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    code = (f"import sys; from ultralytics import YOLO; m = YOLO({str(weights)!r}); "
            f"r = m.predict({str(image)!r}, imgsz=96, verbose=False); "
            "assert not any(n == 'bpr' or n.startswith('bpr.') for n in sys.modules); print('plain', len(r))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "plain 1" in result.stdout, result.stderr


@pytest.mark.slow
def test_cancel_then_resume_from_last_epoch(demo_project):
    cancel_in_second_epoch(demo_project, "c")
    run = demo_project.run("c")
    assert run.status == "cancelled" and [m["epoch"] for m in run.metrics] == [1]
    last = demo_project.folder / "runs" / "c" / "train" / "weights" / "last.pt"
    betas_saved = adam_betas(last)

    events, betas_resumed = [], []

    def on_event(event):
        events.append(event)
        if event.kind == "epoch":  # sent after ultralytics saved the epoch's last.pt
            betas_resumed.append(adam_betas(last))

    run = train(demo_project, resume="c", on_event=on_event)
    assert run.status == "finished" and [m["epoch"] for m in run.metrics] == [1, 2]
    assert events[0].kind == "start" and events[0].epoch == 2  # continued, not restarted
    assert run.metrics[1]["drop"]["negatives_dropped"] > 0  # BPR re-installed after the resume
    assert [m["software"] for m in run.metrics] == [software("cpu")] * 2  # each sitting says what it ran on
    # The resumed run logs AdamW(momentum=0.937), its args' default, but trains on with the betas it
    # was checkpointed with (ultralytics' automatic AdamW: 0.9), restored from the optimizer's state.
    assert betas_resumed == [betas_saved] and {b[0] for b in betas_saved} == {0.9}
    with pytest.raises(ValueError, match="has finished"):
        train(demo_project, resume="c")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_run_resumes_in_a_project_moved_or_copied_between_sittings(demo_template, tmp_path, how):
    """ultralytics keeps absolute paths in last.pt and data.yaml. A project moved or copied (to another
    disk, a GPU machine) must resume from its own files, and not look for, read or write the folder it
    left: a resume there failed (moved), or trained on the original's dataset and wrote into its run."""
    from bpr.data.store import Project

    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(demo_template, before)
    with Project.open(before) as project:
        cancel_in_second_epoch(project, "m")
    (shutil.move if how == "moved" else shutil.copytree)(before, after)
    left = {p: p.read_bytes() for p in before.rglob("*") if p.is_file()} if how == "copied" else {}

    with Project.open(after) as project:
        run = train(project, resume="m")
        assert run.status == "finished" and [m["epoch"] for m in run.metrics] == [1, 2]
        assert project.resolve_path(run.weights).is_relative_to(after / "runs" / "m" / "train" / "weights")
    if how == "moved":
        assert not before.exists()
    else:
        assert {p: p.read_bytes() for p in before.rglob("*") if p.is_file()} == left


@pytest.mark.slow
def test_a_crash_mid_epoch_marks_the_run_failed_and_a_new_run_can_start(demo_project):
    def crash(event):
        if event.kind == "batch" and event.batch == 2:
            raise RuntimeError("simulated failure in the middle of an epoch")

    before = demo_project.summary()
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(demo_project, tiny_config(), name="boom", on_event=crash)
    run = demo_project.run("boom")
    assert run.status == "failed" and "RuntimeError: simulated failure" in run.error
    assert demo_project.summary() == before
    assert demo_project.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert train(demo_project, tiny_config(), name="after").status == "finished"


@pytest.mark.slow
def test_the_same_seed_retraces_the_same_run_on_one_machine(demo_project):
    # `bpr experiment` pairs settings by seed, trained as it trains them: images cached in RAM, a
    # data-loading worker process. The same seed must give the same initial weights, data stream and
    # random drops, so the same losses and drop counts bit for bit; another seed must not.
    def losses_and_drops(name, seed):
        config = tiny_config(epochs=2, workers=1, seed=seed, extra={"cache": "ram"})
        run = train(demo_project, config, name=name)
        return [({k: v for k, v in m.items() if k.endswith("_loss")}, m["drop"]) for m in run.metrics]

    first = losses_and_drops("first", seed=3)
    assert len(first) == 2 and first[0][1]["negatives_dropped"] > 0
    assert losses_and_drops("again", seed=3) == first
    assert losses_and_drops("other", seed=4) != first


def test_bad_settings_are_refused_before_a_run_is_recorded(demo_project):
    with pytest.raises(FileNotFoundError, match="weights .*nowhere.pt not found"):
        train(demo_project, tiny_config(model="nowhere.pt"), name="w")
    with pytest.raises(ValueError, match="device 'cuda:7' is not available here"):
        train(demo_project, tiny_config(device="cuda:7"), name="w")
    assert demo_project.runs() == []  # nothing happened, so nothing to clutter the run list
    demo_project.create_run("w", tiny_config().to_dict())
    with pytest.raises(ValueError, match="exists already"):
        train(demo_project, tiny_config(), name="w")
    assert resolve_device("cpu") == "cpu"


def test_precision_is_checked_and_the_cpu_trains_in_fp32():
    from bpr.learn.training import _arithmetic

    with pytest.raises(ValueError, match="precision 'half': use auto or full"):
        tiny_config(precision="half")
    for precision in ("auto", "full"):
        with _arithmetic("cpu", precision) as amp:
            assert amp is False  # the CPU trains in fp32 whatever is asked


@pytest.mark.cuda
def test_precision_chooses_ultralytics_amp_and_full_turns_tf32_off_on_a_gpu():
    import torch

    from bpr.learn.training import _arithmetic

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with _arithmetic("0", "auto") as amp:
        assert amp == ("bf16" if torch.cuda.is_bf16_supported() else False)
    with _arithmetic("0", "full") as amp:
        assert amp is False
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["auto", "full"])
def test_train_on_a_gpu_offline(demo_project, no_network, precision):
    """The GPU path: ultralytics' AMP check (which downloads a model) is never reached, BPR drops on CUDA."""
    run = train(demo_project, tiny_config(device="cuda", epochs=2, precision=precision), name="gpu")
    assert run.status == "finished" and run.error is None
    assert 0.4 < run.metrics[-1]["drop"]["obj_drop_fraction"] < 0.6
    assert no_network == []


@pytest.mark.slow
@pytest.mark.cuda
def test_a_run_checkpointed_on_the_cpu_resumes_on_a_gpu(demo_project):
    """Device "auto" on a laptop, then on a GPU machine: ultralytics trains channels_last on CUDA alone."""
    cancel_in_second_epoch(demo_project, "c")
    demo_project.update_run("c", config={**demo_project.run("c").config, "device": "cuda"})
    run = train(demo_project, resume="c")
    assert run.status == "finished" and run.error is None
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    assert [m["software"]["device"] for m in run.metrics] == ["CPU", software("0")["device"]]


def test_optimizer_state_takes_its_parameters_layout():
    """What the test above needs, on the CPU: NCHW moments (a CPU checkpoint) for an NHWC parameter."""
    import torch

    weight = torch.nn.Parameter(torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    bias = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.AdamW([weight, bias])
    moments = torch.randn(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    optimizer.state[weight] = {"step": torch.tensor(3.0), "exp_avg": moments[0].clone(),
                               "exp_avg_sq": moments[1].clone()}
    optimizer.state[bias] = {"step": torch.tensor(3.0), "exp_avg": torch.ones(4), "exp_avg_sq": torch.ones(4)}
    assert match_optimizer_state_layout(optimizer) == 2
    state = optimizer.state[weight]
    assert state["exp_avg"].stride() == state["exp_avg_sq"].stride() == weight.stride() != moments[0].stride()
    assert torch.equal(state["exp_avg"], moments[0]) and torch.equal(state["exp_avg_sq"], moments[1])
    assert match_optimizer_state_layout(optimizer) == 0


def test_config_round_trips_through_the_store():
    from bpr.config import PseudoLabels

    config = tiny_config(species=["Basket star"], rebalancing=Rebalancing(p_obj=0.75, partial_only=False),
                         pseudo=PseudoLabels(pseudo_conf=0.6, pseudo_boxes=False, teacher_run="r0", round=1))
    assert TrainConfig.from_dict(config.to_dict()) == config


def u_free_folder() -> Path:
    """A new folder whose path has no letter "u" (ultralytics renames only such paths)."""
    import tempfile
    import time

    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if "u" not in base and os.access(base, os.W_OK):
            folder = Path(base) / f"m0dels-{os.getpid()}-{time.monotonic_ns()}"
            folder.mkdir()
            return folder
    pytest.skip("no writable temporary folder here has a path without the letter u")


def test_local_weights_named_like_yolov5_release_files_load_offline(trained_template, no_network):
    """ultralytics renames '.../yolov5n.pt' (no "u" in the path) to 'yolov5nu.pt' and downloads it."""
    from bpr.results.detect import load_model

    folder = u_free_folder()
    try:
        weights = folder / "yolov5n.pt"
        shutil.copy(trained_template / "runs" / "tiny" / "train" / "weights" / "best.pt", weights)
        assert "u" not in str(weights)
        model, _ = load_model(weights, "cpu")
        assert model.names and no_network == []
    finally:
        shutil.rmtree(folder)


def test_a_run_being_trained_by_another_live_process_is_not_resumed_twice(project, other_process):
    child, owner = other_process
    project.create_run("busy", {})
    project.update_run("busy", owner=owner)
    with pytest.raises(ValueError, match=f"run busy is being trained now, by process {child.pid}"):
        train(project, resume="busy")
