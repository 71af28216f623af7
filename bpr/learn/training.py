"""Train a YOLO detector on a project with Box Prediction Rebalancing and pseudo-labels: config,
progress, cancel, resume.

The model stays a plain ultralytics DetectionModel; BPR's criterion is installed from a trainer callback
after set-up (and re-installed after a resume or a NaN recovery), so checkpoints load anywhere without
bpr. The training set is exported from the store into the run's own folder, with the pseudo-boxes and
ignore regions of the run's teacher run if it has one; an online (EMA) teacher is given to the trainer
(bpr.learn.trainer) before its set-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpr.config import Rebalancing, TrainConfig  # noqa: F401  (re-exported)
from bpr.paths import replace_whole
from bpr.data.store import Project, Run, this_process, trained_elsewhere


class TrainingCancelled(Exception):
    """Raised inside the trainer to stop at the end of the current batch (resumable from last.pt)."""


@dataclass
class TrainEvent:
    """Progress reported to ``on_event`` (called on the training thread)."""

    kind: str                      # "start", "batch", "epoch" (after validation), "end"; self-training's
                                   # "mine" (a teacher detecting); "note" (a message)
    run: str
    epoch: int = 0                 # 1-based
    epochs: int = 0
    batch: int = 0                 # 1-based within the epoch
    batches: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)   # after validation: mAP50, mAP50-95, ...
    drop: dict[str, Any] = field(default_factory=dict)        # measured BPR drop counts and fractions
    eta_s: float | None = None
    message: str = ""


def resolve_device(device: str) -> str:
    """ultralytics' device string for ours: 'cpu' or a CUDA index; 'auto' picks CUDA when present.
    For the CPU it also sets the threads ultralytics will compute on (_take_two_cores)."""
    import torch

    device = str(device).strip().lower()
    if device in ("", "auto"):
        device = "cpu" if not torch.cuda.is_available() else "cuda"
    if device == "cpu":
        _take_two_cores()
        return "cpu"
    index = device.removeprefix("cuda").lstrip(":") or "0"
    if not index.isdigit():
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available() or int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} is not available here (CUDA devices: "
                         f"{torch.cuda.device_count() if torch.cuda.is_available() else 0})")
    return index


def software(device: str | None = None) -> dict[str, str]:
    """The versions that train or evaluate a run, and with a resolved ``device`` the processor: a run
    can be resumed on another machine, and an upgrade (ultralytics changes its losses and defaults
    between releases) or other arithmetic (a GPU's) may make it incomparable with its sweep."""
    import torch

    from bpr import __version__
    from bpr.offline import configure

    configure()  # before ultralytics is imported
    import ultralytics

    versions = {"bpr": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
    if device is not None:
        versions["device"] = "CPU" if device == "cpu" else torch.cuda.get_device_name(int(device))
    return versions


def trained_on(metrics: list[dict]) -> str:
    """'CPU', or for a run resumed on another machine 'NVIDIA H200 (epochs 1-26), CPU (27-200)'; empty
    for a run whose epochs predate the record (``software``)."""
    spans: list[list] = []  # [processor, first epoch, last epoch]
    for m in metrics:
        processor = m.get("software", {}).get("device", "not recorded")
        if spans and spans[-1][0] == processor:
            spans[-1][2] = m["epoch"]
        else:
            spans.append([processor, m["epoch"], m["epoch"]])
    if not spans or all(processor == "not recorded" for processor, *_ in spans):
        return ""
    if len(spans) == 1:
        return spans[0][0]
    parts = []
    for processor, first, last in spans:
        epochs = str(first) if first == last else f"{first}-{last}"
        if not parts:  # the first span says what the numbers are
            epochs = ("epoch " if first == last else "epochs ") + epochs
        parts.append(f"{processor} ({epochs})")
    return ", ".join(parts)


def describe_method(config: dict) -> str:
    """How a run (its stored config) treats the boxes nobody drew, in a few words: 'labels only',
    'BPR p_obj 0.25 p_box 0', 'EMA teacher from epoch 20', 'self-training round 1 (teacher a-r0)'."""
    rb, pseudo = config["rebalancing"], config.get("pseudo", {})
    parts = []
    if rb["p_obj"] or rb["p_box"]:
        where = "" if rb.get("partial_only", True) else " (all frames)"
        parts.append(f"BPR p_obj {rb['p_obj']:g} p_box {rb['p_box']:g}{where}")
    if pseudo.get("teacher") == "ema" or pseudo.get("teacher_run"):
        what = (f"pseudo-boxes from {pseudo['pseudo_conf']:g}, " if pseudo["pseudo_boxes"] else "") \
            + f"ignored from {pseudo['ignore_conf']:g}"
        if pseudo.get("teacher_run"):
            parts.append(f"self-training round {pseudo['round']} (teacher {pseudo['teacher_run']}; {what})")
        else:
            parts.append(f"EMA teacher from epoch {pseudo['burn_in']} ({what})")
    return ", ".join(parts) or "labels only"


@contextlib.contextmanager
def _arithmetic(device: str, precision: str):
    """Yields ultralytics' ``amp`` argument for ``precision`` on ``device`` (bpr.config.TrainConfig).

    On a GPU, "auto" is bf16 mixed precision where the GPU has it (ultralytics' float16 AMP check
    downloads a model, so it is never asked for); "full" is fp32 with TF32 off for the duration, the
    arithmetic of the CPU, which never uses reduced precision.
    """
    if device == "cpu":
        yield False
        return
    import torch

    if precision == "auto":
        yield "bf16" if torch.cuda.is_bf16_supported() else False
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _take_two_cores() -> None:
    """Compute on two threads where ultralytics would take one.

    On the CPU ultralytics computes with one thread fewer than the cores (its NUM_THREADS, min(8,
    cores - 1)), to leave one to its data loader. On 2 cores that is one thread: an epoch on the
    brittlestar frames took 59 s, and 38 s with two (benchmarks/bench_cpu_threads.py). More cores keep
    ultralytics' choice.
    """
    from bpr.offline import configure

    configure()  # before ultralytics is imported
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = max(torch_utils.NUM_THREADS, min(2, os.cpu_count() or 1))


def match_optimizer_state_layout(optimizer) -> int:
    """Give each optimizer state tensor its parameter's memory layout; returns how many it changed.

    ultralytics trains channels_last on CUDA only, so a run checkpointed on the CPU and resumed on a GPU
    (device "auto" on two machines) brings NCHW moments to NHWC parameters, and CUDA's fused AdamW
    stops at the first step: "params, grads, exp_avgs, and exp_avg_sqs must have same dtype, device,
    and layout". The values are kept.
    """
    import torch

    changed = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                    changed += 1
    return changed


def _metrics(trainer) -> dict[str, float]:
    keys = {"metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95",
            "metrics/precision(B)": "precision", "metrics/recall(B)": "recall"}
    return {short: float(trainer.metrics[k]) for k, short in keys.items() if k in (trainer.metrics or {})}


def _losses(trainer) -> dict[str, float]:
    return {k: float(v) for k, v in (trainer.tloss or {}).items()}


class _Session:
    """The callbacks of one training run: install BPR, report progress, honour cancel, record epochs."""

    def __init__(self, project: Project, run: str, config: TrainConfig, device: str, partial_images: set[str],
                 on_event: Callable[[TrainEvent], None] | None, cancel: Callable[[], bool] | None):
        from bpr.learn.loss import DropStats

        self.project, self.run, self.config = project, run, config
        self.partial_images = partial_images
        self.on_event = on_event
        self.cancel = cancel
        self.stats = DropStats()
        self.teacher = None
        if config.pseudo.teacher == "ema":
            from bpr.learn.pseudo import OnlineTeacher

            self.teacher = OnlineTeacher(config.pseudo, partial_images)
        self.metrics: list[dict] = project.run(run).metrics
        self.software = software(device)  # recorded with each epoch: a resumed run may span machines
        self.started = time.time()
        self.batches_done = 0

    def emit(self, event: TrainEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def attach(self, model) -> None:
        model.add_callback("on_pretrain_routine_start", self.give_teacher)
        model.add_callback("on_pretrain_routine_end", self.install)
        model.add_callback("on_train_epoch_start", self.ensure_installed)
        model.add_callback("on_train_batch_end", self.batch_end)
        model.add_callback("on_fit_epoch_end", self.epoch_end)

    def give_teacher(self, trainer) -> None:
        trainer.teacher = self.teacher

    def install(self, trainer) -> None:
        from bpr.learn.loss import build_criterion
        from ultralytics.utils.torch_utils import unwrap_model

        settings = self.config.rebalancing
        # A resumed run continues with fresh draws rather than replaying the first epochs' draws.
        settings = dataclasses.replace(settings, seed=settings.seed + 1_000_003 * trainer.start_epoch)
        model = unwrap_model(trainer.model)
        model.criterion = build_criterion(model, settings, self.stats, self.partial_images)
        self.emit(TrainEvent("start", self.run, epoch=trainer.start_epoch + 1, epochs=trainer.epochs,
                             batches=len(trainer.train_loader),
                             message=f"training {self.run} on {trainer.device}"))

    def ensure_installed(self, trainer) -> None:
        from bpr.learn.loss import criterion_stats
        from ultralytics.utils.torch_utils import unwrap_model

        if criterion_stats(getattr(unwrap_model(trainer.model), "criterion", None)) is not self.stats:
            self.install(trainer)
        self.stats.reset()
        if self.teacher is not None:
            self.teacher.reset()
        # Before the first step of a resumed run (or after ultralytics reloads last.pt to recover from NaN).
        match_optimizer_state_layout(trainer.optimizer)

    def batch_end(self, trainer) -> None:
        self.batches_done += 1
        batches = len(trainer.train_loader)
        done_in_epoch = (self.batches_done - 1) % batches + 1 if batches else 0
        left = (trainer.epochs - trainer.epoch - 1) * batches + (batches - done_in_epoch)
        rate = (time.time() - self.started) / self.batches_done
        self.emit(TrainEvent("batch", self.run, epoch=trainer.epoch + 1, epochs=trainer.epochs,
                             batch=done_in_epoch, batches=batches, losses=_losses(trainer),
                             drop=self.stats.summary(), eta_s=left * rate))
        if self.cancel is not None and self.cancel():
            raise TrainingCancelled(f"run {self.run} cancelled at epoch {trainer.epoch + 1}, "
                                    f"batch {done_in_epoch}/{batches}")

    def epoch_end(self, trainer) -> None:
        epoch = trainer.epoch + 1
        if any(m["epoch"] >= epoch for m in self.metrics) or epoch > trainer.epochs:
            # ultralytics calls this once more after training, for its evaluation of best.pt
            self.project.update_run(self.run, summary={"best": _metrics(trainer)})
            return
        record = {"epoch": trainer.epoch + 1, **_losses(trainer), **_metrics(trainer),
                  "drop": self.stats.summary(), "time": time.time(), "software": self.software}
        if self.teacher is not None and self.teacher.applies(trainer):
            record["teacher"] = dict(self.teacher.counts)
        self.metrics.append(record)
        self.project.update_run(self.run, metrics=self.metrics)  # committed now: a crash keeps it
        self.emit(TrainEvent("epoch", self.run, epoch=trainer.epoch + 1, epochs=trainer.epochs,
                             losses=_losses(trainer), metrics=_metrics(trainer), drop=self.stats.summary()))


def run_folder(project: Project, run: str) -> Path:
    return project.folder / "runs" / run


def run_dataset(project: Project, run: str) -> Path:
    """The YOLO dataset the run exported and trained on (with any hidden boxes left out)."""
    return run_folder(project, run) / "dataset"


def export_manifest(project: Project, run: str) -> Path:
    """The manifest of the training set the run exported: its counts, partial images, hidden boxes
    and label checksums."""
    from bpr.data.dataset import EXPORT_MANIFEST

    return run_dataset(project, run) / EXPORT_MANIFEST


def _new_run_name(project: Project) -> str:
    taken = {r.name for r in project.runs()}
    n = len(taken) + 1
    while f"run{n}" in taken:
        n += 1
    return f"run{n}"


def _follow_move(folder: Path, dataset: Path, last: Path) -> None:
    """Point a run's files back at its own folder before resuming it, if its project has moved.

    ultralytics records absolute paths: the dataset root in data.yaml, and the dataset, the output
    folder and the project in the checkpoint. After a move (another disk, a GPU machine) they name the
    folder the project left: resuming there fails, or, beside a copy left behind, trains on the copy's
    files and writes into its run.
    """
    import torch
    import yaml

    data_yaml = dataset / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    if data.get("path") != str(dataset):
        data["path"] = str(dataset)
        replace_whole(data_yaml, yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)  # our own file: it holds the model
    here = {"data": str(data_yaml), "project": str(folder), "save_dir": str(folder / "train")}
    args = checkpoint.get("train_args") or {}
    if any(args.get(key) != value for key, value in here.items()):
        checkpoint["train_args"] = {**args, **here}
        replace_whole(last, lambda f: torch.save(checkpoint, f))


def train(project: Project, config: TrainConfig | None = None, name: str | None = None,
          resume: str | None = None, on_event: Callable[[TrainEvent], None] | None = None,
          cancel: Callable[[], bool] | None = None) -> Run:
    """Train (or resume) a run; returns the run's record from the store.

    A bad device or a missing weights file is refused before anything is recorded. Then the run is
    recorded before anything else happens. Cancelling (``cancel()`` turning true) stops at the end of the current
    batch, marks the run ``cancelled`` and raises TrainingCancelled; it can be resumed from its last
    finished epoch. Any other error marks the run ``failed`` with the error and is re-raised.
    """
    from bpr.data.dataset import export_yolo
    from bpr.offline import configure, local_weights

    configure()
    if resume is not None:
        record = project.run(resume)
        if record.status == "finished":
            raise ValueError(f"run {resume} has finished; start a new run instead")
        pid = trained_elsewhere(record)
        if pid is not None:
            raise ValueError(f"run {resume} is being trained now, by process {pid}")
        name, config = resume, TrainConfig.from_dict(record.config)
    else:
        config = config or TrainConfig()
        name = name or _new_run_name(project)
        if any(r.name == name for r in project.runs()):
            raise ValueError(f"a run named {name!r} exists already; choose another name or resume it")
    device = resolve_device(config.device)
    model = config.model
    if model.endswith(".pt"):  # a missing or oddly named .pt makes ultralytics try to download it
        model = str(local_weights(model))
    if resume is not None:
        project.update_run(name, status="running", error=None, finished=None, owner=this_process())
    else:
        project.create_run(name, config.to_dict())

    folder, dataset_folder = run_folder(project, name), run_dataset(project, name)
    try:
        last = folder / "train" / "weights" / "last.pt"
        if resume is not None and last.exists():
            manifest = json.loads(export_manifest(project, name).read_text())
            partial = set(manifest["partial_images"])
        else:
            export = export_yolo(project, dataset_folder, species=config.species,
                                 hide_fraction=config.hide_fraction, seed=config.seed, protocol=config.protocol,
                                 pseudo_from=config.pseudo.teacher_run,
                                 pseudo_as_ignore=not config.pseudo.pseudo_boxes)
            partial = set(export.partial_images)

        from ultralytics import YOLO

        from bpr.learn.trainer import PartialLabelTrainer

        session = _Session(project, name, config, device, partial, on_event, cancel)
        with _arithmetic(device, config.precision) as amp:
            if resume is not None and last.exists():
                _follow_move(folder, dataset_folder, last)
                model = YOLO(str(last))
                session.attach(model)
                model.train(resume=str(last), device=device, workers=config.workers, trainer=PartialLabelTrainer)
            else:
                model = YOLO(model)
                session.attach(model)
                model.train(data=str(dataset_folder / "data.yaml"), epochs=config.epochs,
                            imgsz=config.imgsz, batch=config.batch, device=device, seed=config.seed,
                            deterministic=True, workers=config.workers, patience=config.patience,
                            val=config.val, plots=False, amp=amp, pretrained=config.model.endswith(".pt"),
                            project=str(folder), name="train", exist_ok=True, verbose=False,
                            trainer=PartialLabelTrainer, **config.extra)
    except TrainingCancelled as e:
        project.update_run(name, status="cancelled", error=str(e), finished=time.time())
        raise
    except KeyboardInterrupt:
        project.update_run(name, status="cancelled", error="interrupted", finished=time.time())
        raise
    except Exception as e:
        project.update_run(name, status="failed", finished=time.time(),
                           error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
        raise
    best = folder / "train" / "weights" / "best.pt"
    project.update_run(name, status="finished", finished=time.time(),
                       weights=project.stored_path(best if best.exists() else last))
    if on_event is not None:
        on_event(TrainEvent("end", name, message=f"run {name} finished"))
    return project.run(name)
