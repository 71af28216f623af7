"""Train a YOLO detector on a project with Box Prediction Rebalancing and pseudo-labels: config,
progress, cancel, resume.

The model stays a plain ultralytics DetectionModel, so checkpoints load anywhere without bpr. The
training set is exported from the store into the run's own folder, with the pseudo-boxes and ignore
regions of the run's teacher run if it has one. The trainer (bpr.learn.trainer) reads the run's
settings from its record and installs BPR's criterion and any online (EMA) teacher itself, in one
process or in each rank of a DDP run on several GPUs (``device`` "0,1"); progress, cancel and the
epochs' records are this module's callbacks, relayed from rank 0 in a DDP run.
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
    """ultralytics' device string for ours: 'cpu', a CUDA index, or CUDA indices '0,1' (DDP training on
    several GPUs); 'auto' picks CUDA when present. For the CPU it also sets the threads ultralytics
    will compute on (_take_two_cores)."""
    import torch

    device = str(device).strip().lower()
    if device in ("", "auto"):
        device = "cpu" if not torch.cuda.is_available() else "cuda"
    if device == "cpu":
        _take_two_cores()
        return "cpu"
    indices = [i.strip() for i in device.removeprefix("cuda").lstrip(":").split(",")]
    indices = indices if indices != [""] else ["0"]
    if not all(i.isdigit() for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or N,M,... (several GPUs)")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if any(int(i) >= available for i in indices):
        raise ValueError(f"device {device!r} is not available here (CUDA devices: {available})")
    return ",".join(indices)


def inference_device(device: str) -> str:
    """The one device a resolved training device infers on: the first GPU of a DDP run's."""
    return device.split(",")[0]


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
    if device == "cpu":
        versions["device"] = "CPU"
    elif device is not None:
        names = [torch.cuda.get_device_name(int(i)) for i in device.split(",")]
        versions["device"] = (f"{len(names)}x {names[0]}" if len(names) > 1 and len(set(names)) == 1
                              else ", ".join(names))
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
        start = f"{pseudo['pseudo_conf']:g}" if pseudo["pseudo_conf"] is not None else \
            f"the score {pseudo['pseudo_precision']:.0%} right on val"
        weighted = " weighted by score" if pseudo.get("weight_by_score") else ""
        what = ", ".join(([f"pseudo-boxes from {start}{weighted}"] if pseudo["pseudo_boxes"] else [])
                         + ([f"ignored from {pseudo['ignore_conf']:g}"] if pseudo.get("ignore_band", True) else []))
        if pseudo.get("teacher_run"):
            parts.append(f"self-training round {pseudo['round']} (teacher {pseudo['teacher_run']}; {what})")
        else:
            parts.append(f"EMA teacher from epoch {pseudo['burn_in']} ({what})")
    if config.get("hidden_as_ignore"):
        parts.append("the hidden boxes ignored (an oracle)")
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
    saved = _allow_tf32(False, False)
    try:
        yield False
    finally:
        _allow_tf32(*saved)


def _allow_tf32(convolutions: bool, matmuls: bool) -> tuple[bool, bool]:
    """Set whether CUDA may compute convolutions and matrix products in TF32; returns what was set."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = convolutions, matmuls
    return saved


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


# ultralytics' names of the validation figures an epoch record keeps, and the record's names for them
METRIC_NAMES = {"metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95",
                "metrics/precision(B)": "precision", "metrics/recall(B)": "recall"}


def _metrics(trainer) -> dict[str, float]:
    return {short: float(trainer.metrics[k]) for k, short in METRIC_NAMES.items() if k in (trainer.metrics or {})}


def _losses(trainer) -> dict[str, float]:
    return {k: float(v) for k, v in (trainer.tloss or {}).items()}


class _Session:
    """The callbacks of one training run: report progress, honour cancel, record epochs.

    In one process they are the model's callbacks; in a DDP run each rank attaches its own
    (``attach_rank``), rank 0 alone recording. The partial-label learning itself is the trainer's
    (bpr.learn.trainer): the session reads its drop counts and teacher counts from ``trainer.partial``.
    """

    def __init__(self, project: Project | None, run: str, device: str,
                 on_event: Callable[[TrainEvent], None] | None, cancel: Callable[[], bool] | None):
        self.project, self.run = project, run  # project None: a rank that does not record
        self.on_event = on_event
        self.cancel = cancel
        self.metrics: list[dict] = project.run(run).metrics if project is not None else []
        self.software = software(device)  # recorded with each epoch: a resumed run may span machines
        self.started = time.time()
        self.batches_done = 0

    def emit(self, event: TrainEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def attach(self, target) -> None:
        """Add the callbacks to ``target``: a YOLO model before training, or a trainer."""
        target.add_callback("on_pretrain_routine_end", self.start)
        target.add_callback("on_train_batch_end", self.batch_end)
        target.add_callback("on_fit_epoch_end", self.epoch_end)

    def start(self, trainer) -> None:
        self.emit(TrainEvent("start", self.run, epoch=trainer.start_epoch + 1, epochs=trainer.epochs,
                             batches=len(trainer.train_loader),
                             message=f"training {self.run} on {trainer.device}"))

    def batch_end(self, trainer) -> None:
        self.batches_done += 1
        batches = len(trainer.train_loader)
        done_in_epoch = (self.batches_done - 1) % batches + 1 if batches else 0
        left = (trainer.epochs - trainer.epoch - 1) * batches + (batches - done_in_epoch)
        rate = (time.time() - self.started) / self.batches_done
        self.emit(TrainEvent("batch", self.run, epoch=trainer.epoch + 1, epochs=trainer.epochs,
                             batch=done_in_epoch, batches=batches, losses=_losses(trainer),
                             drop=trainer.partial.stats.summary(), eta_s=left * rate))
        if self.cancel is not None and self.cancel():
            raise TrainingCancelled(f"run {self.run} cancelled at epoch {trainer.epoch + 1}, "
                                    f"batch {done_in_epoch}/{batches}")

    def epoch_end(self, trainer) -> None:
        if self.project is None:
            return
        epoch = trainer.epoch + 1
        if any(m["epoch"] >= epoch for m in self.metrics) or epoch > trainer.epochs:
            # ultralytics calls this once more after training, for its evaluation of best.pt
            self.project.update_run(self.run, summary={"best": _metrics(trainer)})
            return
        drop, teacher = trainer.partial.stats.summary(), trainer.partial.teacher
        record = {"epoch": trainer.epoch + 1, **_losses(trainer), **_metrics(trainer),
                  "drop": drop, "time": time.time(), "software": self.software}
        if teacher is not None and teacher.applies(trainer):
            # the score this epoch used, and the one its validation read off (the next epoch's)
            record["teacher"] = {**teacher.counts, "pseudo_conf": teacher.epoch_conf,
                                 "calibrated": teacher.calibrated}
        self.metrics.append(record)
        self.project.update_run(self.run, metrics=self.metrics)  # committed now: a crash keeps it
        self.emit(TrainEvent("epoch", self.run, epoch=trainer.epoch + 1, epochs=trainer.epochs,
                             losses=_losses(trainer), metrics=_metrics(trainer), drop=drop))


# A DDP run's rank 0 appends its progress events to this file in the run's folder, one JSON object a
# line, and the process that launched the ranks relays them; that process asks the ranks to stop by
# creating the cancel file.
RANK_EVENTS, RANK_CANCEL = "rank-events.jsonl", "rank-cancel"


def _launches_ranks(device: str) -> bool:
    """Whether training on this resolved device starts ultralytics' DDP ranks."""
    return "," in device


def attach_rank(trainer) -> None:
    """Progress, cancel and recording in a rank that ultralytics' DDP launcher started
    (bpr.learn.trainer.PartialLabelTrainer calls it in each rank, for a bpr run).

    Rank 0 records the epochs in the store and appends its events to the run folder's RANK_EVENTS; all
    ranks stop at the same batch when the launching process creates RANK_CANCEL (rank 0 looks, and
    tells the others); drop and teacher counts are summed over the ranks before each epoch's record.
    """
    from bpr.learn.trainer import ddp_rank

    rank = ddp_rank()
    partial = trainer.partial
    folder = partial.project_folder / "runs" / partial.run
    device = resolve_device(trainer.args.device)
    if partial.config.precision == "full" and device != "cpu":
        _allow_tf32(False, False)  # the launching process's setting does not reach this process
    project, on_event = None, None
    if rank == 0:
        project = Project.open(partial.project_folder)
        events = open(folder / RANK_EVENTS, "a", encoding="utf-8")

        def on_event(event: TrainEvent) -> None:
            events.write(json.dumps(dataclasses.asdict(event)) + "\n")
            events.flush()

    def cancel() -> bool:
        import torch
        import torch.distributed as dist

        asked = torch.tensor([int(rank == 0 and (folder / RANK_CANCEL).exists())], device=trainer.device)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(asked, 0)
        return bool(asked.item())

    _Session(project, partial.run, device, on_event, cancel).attach(trainer)
    trainer.add_callback("on_train_epoch_end", _sum_over_ranks)


def _sum_over_ranks(trainer) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    trainer.partial.stats.sum_over_ranks(trainer.device)
    if trainer.partial.teacher is not None:
        trainer.partial.teacher.sum_over_ranks(trainer.device)


class _RankRelay:
    """In the process that launched a DDP run: relays rank 0's events (RANK_EVENTS) to ``on_event`` and
    passes a cancel to the ranks (RANK_CANCEL), from a thread, while ultralytics waits on the ranks."""

    def __init__(self, folder: Path, on_event: Callable[[TrainEvent], None] | None,
                 cancel: Callable[[], bool] | None):
        import threading

        self.events, self.request = folder / RANK_EVENTS, folder / RANK_CANCEL
        self.events.unlink(missing_ok=True)
        self.request.unlink(missing_ok=True)
        self.on_event, self.cancel = on_event, cancel
        self.cancelled = False
        self.last: TrainEvent | None = None
        self._read = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bpr-rank-relay", daemon=True)

    def __enter__(self) -> _RankRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.request.unlink(missing_ok=True)

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            self._poll()
        self._poll()

    def _poll(self) -> None:
        if self.events.exists():
            with open(self.events, "rb") as f:
                f.seek(self._read)
                data = f.read()
            complete = data[:data.rfind(b"\n") + 1]  # a line rank 0 is still writing waits for the next look
            self._read += len(complete)
            for line in complete.decode("utf-8").splitlines():
                self.last = TrainEvent(**json.loads(line))
                if self.on_event is not None:
                    self.on_event(self.last)
        if self.cancel is not None and not self.cancelled and self.cancel():  # after the events it may follow
            self.cancelled = True
            self.request.touch()

    def cancelled_message(self, run: str) -> str:
        where = f" at epoch {self.last.epoch}, batch {self.last.batch}/{self.last.batches}" \
            if self.last is not None and self.last.kind == "batch" else ""
        return f"run {run} cancelled{where}"


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


def export_run_training_set(project: Project, run: str, config: TrainConfig) -> None:
    """Write the training set ``run`` trains on (run_dataset): the labels less the boxes the config
    hides, and its teacher's pseudo-boxes, as boxes or as ignore regions."""
    from bpr.data.dataset import export_training_set

    export_training_set(project, run_dataset(project, run), config, pseudo_from=config.pseudo.teacher_run,
                        pseudo_as_ignore=not config.pseudo.pseudo_boxes, pseudo_weighted=config.pseudo.weight_by_score,
                        ignore_band=config.pseudo.ignore_band)


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
          cancel: Callable[[], bool] | None = None, device: str | None = None) -> Run:
    """Train (or resume) a run; returns the run's record from the store. ``device`` replaces the
    config's, or with ``resume`` the run's recorded one: the rest trains there (a run carried between
    machines, as ultralytics' resume allows), and the record keeps it.

    A bad device or a missing weights file is refused before anything is recorded. Then the run is
    recorded before anything else happens. Cancelling (``cancel()`` turning true) stops at the end of the current
    batch, marks the run ``cancelled`` and raises TrainingCancelled; it can be resumed from its last
    finished epoch. Any other error marks the run ``failed`` with the error and is re-raised.
    """
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
    if device is not None:
        config = dataclasses.replace(config, device=device)
    try:
        device = resolve_device(config.device)
    except ValueError as e:
        if resume is None or device is not None:
            raise
        raise ValueError(f"{e}: run {resume} trained on {config.device}; resume it on another (--device; in the "
                         "app, the Device setting)") from None
    model = config.model
    if model.endswith(".pt"):  # a missing or oddly named .pt makes ultralytics try to download it
        model = str(local_weights(model))
    if resume is not None:
        project.update_run(name, status="running", error=None, finished=None, owner=this_process(),
                           config=config.to_dict())
    else:
        project.create_run(name, config.to_dict())

    folder, dataset_folder = run_folder(project, name), run_dataset(project, name)
    relay = None
    try:
        last = folder / "train" / "weights" / "last.pt"
        resuming = resume is not None and last.exists()
        if not resuming:
            export_run_training_set(project, name, config)

        from ultralytics import YOLO

        from bpr.learn import trainer as partial_label_trainer

        relay = _RankRelay(folder, on_event, cancel) if _launches_ranks(device) else None
        with _arithmetic(device, config.precision) as amp, relay or contextlib.nullcontext():
            if resuming:
                _follow_move(folder, dataset_folder, last)
            model = YOLO(str(last) if resuming else model)
            if relay is None:  # the ranks of a DDP run attach their own (attach_rank)
                _Session(project, name, device, on_event, cancel).attach(model)
            trainer = partial_label_trainer.PartialLabelTrainer  # it reads the run's settings from its record
            if resuming:
                model.train(resume=str(last), device=device, workers=config.workers, trainer=trainer)
            else:
                model.train(data=str(dataset_folder / "data.yaml"), epochs=config.epochs,
                            imgsz=config.imgsz, batch=config.batch, device=device, seed=config.seed,
                            deterministic=True, workers=config.workers, patience=config.patience,
                            val=config.val, plots=False, amp=amp, pretrained=config.model.endswith(".pt"),
                            project=str(folder), name="train", exist_ok=True, verbose=False,
                            trainer=trainer, **config.extra)
    except TrainingCancelled as e:
        project.update_run(name, status="cancelled", error=str(e), finished=time.time())
        raise
    except KeyboardInterrupt:
        project.update_run(name, status="cancelled", error="interrupted", finished=time.time())
        raise
    except Exception as e:
        if relay is not None and relay.cancelled:  # the ranks stopped on our request
            message = relay.cancelled_message(name)
            project.update_run(name, status="cancelled", error=message, finished=time.time())
            raise TrainingCancelled(message) from None
        project.update_run(name, status="failed", finished=time.time(),
                           error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
        raise
    best = folder / "train" / "weights" / "best.pt"
    project.update_run(name, status="finished", finished=time.time(),
                       weights=project.stored_path(best if best.exists() else last))
    if on_event is not None:
        on_event(TrainEvent("end", name, message=f"run {name} finished"))
    return project.run(name)
