"""The experiment as one resumable command: baseline vs BPR and pseudo-label settings over seeds, a
results table.

Every setting trains with identical hyperparameters and seeds (only the method differs), on a
training set where a seeded fraction of the boxes is hidden (the partial labels), and is evaluated on
the val and test splits' fully labeled frames. Each finished run's result is appended to
``results.jsonl`` at once; a rerun skips what is there, resumes interrupted runs, and rewrites the
table (markdown and CSV) and the plot. Single runs on small data are noisy, so each setting is
repeated over seeds and reported as mean ± standard deviation.

The pseudo-label settings learn from a teacher run of the same seed: ``ignore`` (the ignore band of the
baseline's detections, no pseudo-boxes), ``pseudo`` (the baseline's pseudo-boxes, no ignore band: the
two halves of ``selftrain1`` apart), ``selftrain1`` (the baseline's pseudo-boxes and ignore regions),
``selftrain2`` (selftrain1's), ``ema`` (an online EMA teacher, no teacher run), and each ``combine``
entry (a method with BPR's p_obj). With ``oracle``, ``hidden-ignored`` trains with the hidden boxes
themselves as ignore regions: the ignore band of a teacher that found every hidden animal, the most an
ignore band can win back (a diagnostic; no teacher can know the hidden boxes). Round 0 with the
baseline's settings *is* the baseline run: its best.pt is kept in ``teachers/`` so that later rounds go
on elsewhere without retraining it.

The project a sweep builds from a data.yaml is not kept (its frames come back from the data); what a
run in training needs to go on is: after each epoch the sweep copies the run's checkpoints and epoch
records into ``unfinished/RUN/``, so that a sweep whose machine was lost mid-run resumes that run from
its last epoch wherever the sweep's folder was carried, and deletes them when the run finishes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bpr.config import PseudoLabels, Rebalancing, default, from_flat
from bpr.paths import replace_whole
from bpr.data.store import LEARNED_MAP50, LINK_HINT, NotFoundError, Project, Run, trained_elsewhere
from bpr.learn.training import (METRIC_NAMES, TrainConfig, TrainEvent, TrainingCancelled, describe_method,
                                export_manifest, export_run_training_set, resolve_device, run_folder, software,
                                train)


@dataclass
class Setting:
    name: str
    rebalancing: Rebalancing
    hide: float                  # fraction of training boxes hidden (0 for the upper bound)
    pseudo: PseudoLabels = field(default_factory=PseudoLabels)
    teacher: str | None = None   # the setting whose run of the same seed teaches this one
    keep_per_image: int = 0      # or: all training boxes hidden but this many per image (0: off)
    hidden_as_ignore: bool = False  # the oracle: the hidden boxes are ignore regions


# The pseudo-label settings (see the module's docstring), each with its teacher setting.
PSEUDO_SETTINGS = {"ignore": "baseline", "pseudo": "baseline", "selftrain1": "baseline", "selftrain2": "selftrain1",
                   "ema": None}


# The training options a sweep sets, alike for every run of it (bpr.config describes them), and the
# defaults it gives them where TrainConfig's are other: a small model at a small size, for longer.
EXPERIMENT_TRAIN_OPTIONS = ("model", "epochs", "imgsz", "batch", "device", "workers", "patience", "precision",
                            "extra")
EXPERIMENT_DEFAULTS = {"epochs": 100, "imgsz": 320}


def _train_default(name: str):
    """The field of a sweep's training option, with the sweep's default, else TrainConfig's."""
    value = EXPERIMENT_DEFAULTS.get(name, default(TrainConfig, name))
    if isinstance(value, dict):
        return field(default_factory=lambda: dict(value))
    return field(default=value)


@dataclass
class ExperimentSpec:
    data: str                            # a project folder, or a YOLO data.yaml to import
    out: Path
    hide: float | None = None            # fraction of training boxes hidden; None: 0.5, or 0 with keep_per_image
    keep_per_image: int = default(TrainConfig, "keep_per_image")  # instead: boxes kept per training image
    p_obj: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75])
    p_box: list[float] = field(default_factory=lambda: [0.25])
    both: list[tuple[float, float]] = field(default_factory=lambda: [(0.75, 0.25)])
    pseudo: list[str] = field(default_factory=lambda: list(PSEUDO_SETTINGS))
    combine: list[tuple[str, float]] = field(default_factory=lambda: [("selftrain1", 0.25)])  # (method, p_obj)
    pseudo_precision: float = default(PseudoLabels, "pseudo_precision")
    pseudo_conf: float | None = default(PseudoLabels, "pseudo_conf")   # None: calibrated to each teacher
    ignore_conf: float = default(PseudoLabels, "ignore_conf")
    burn_in: int | None = None           # the EMA teacher's burn-in; None: half the epochs
    tta: bool = True                     # the teachers detect with test-time augmentation
    oracle: bool = False                 # also train hidden-ignored (TrainConfig.hidden_as_ignore)
    upper_bound: bool = True
    upper_bound_from: Path | None = None  # an earlier sweep whose all-labels runs this one takes
    seeds: int = 3
    model: str = _train_default("model")
    epochs: int = _train_default("epochs")
    imgsz: int = _train_default("imgsz")
    batch: int = _train_default("batch")
    device: str = _train_default("device")
    workers: int = _train_default("workers")
    patience: int = _train_default("patience")
    precision: str = _train_default("precision")
    extra: dict = _train_default("extra")   # further ultralytics train() arguments, e.g. {"nbs": 16}

    def __post_init__(self):
        if self.hide is None:
            self.hide = 0.0 if self.keep_per_image else 0.5
        # refuses values out of range, and arguments the trainer sets itself, before any run starts
        self.train_config(0, self._partial("baseline", Rebalancing()))
        self.settings()

    def train_config(self, seed: int, setting: Setting) -> TrainConfig:
        """The training settings of one run of the sweep."""
        values = {name: getattr(self, name) for name in EXPERIMENT_TRAIN_OPTIONS}
        values["extra"] = {"cache": "ram", **self.extra}  # disk if RAM is short
        config = from_flat(TrainConfig, {**values, "seed": seed, "hide_fraction": setting.hide,
                                         "keep_per_image": setting.keep_per_image,
                                         "hidden_as_ignore": setting.hidden_as_ignore})
        config.rebalancing = dataclasses.replace(setting.rebalancing, seed=seed)
        config.pseudo = setting.pseudo
        if setting.teacher is not None:
            config.pseudo = dataclasses.replace(setting.pseudo, teacher_run=f"{setting.teacher}-seed{seed}",
                                                round=self.round_of(setting))
        return config

    def round_of(self, setting: Setting) -> int:
        """A setting's self-training round: 0 without a teacher, else its teacher's round + 1."""
        by_name = {s.name: s for s in self.settings()}
        return 0 if setting.teacher is None else self.round_of(by_name[setting.teacher]) + 1

    def _pseudo_setting(self, method: str, rebalancing: Rebalancing, name: str) -> Setting:
        if method not in PSEUDO_SETTINGS:
            raise ValueError(f"no pseudo-label setting {method!r}: use {', '.join(PSEUDO_SETTINGS)}")
        thresholds = dict(pseudo_precision=self.pseudo_precision, pseudo_conf=self.pseudo_conf,
                          ignore_conf=self.ignore_conf)
        if method == "ema":
            burn_in = self.epochs // 2 if self.burn_in is None else self.burn_in
            pseudo = PseudoLabels(teacher="ema", burn_in=burn_in, **thresholds)
        else:
            pseudo = PseudoLabels(pseudo_boxes=method != "ignore", ignore_band=method != "pseudo", **thresholds)
        return self._partial(name, rebalancing, pseudo, PSEUDO_SETTINGS[method])

    def _partial(self, name: str, rebalancing: Rebalancing, pseudo: PseudoLabels | None = None,
                 teacher: str | None = None) -> Setting:
        """A setting trained on the partial labels (the sweep's hidden boxes)."""
        return Setting(name, rebalancing, self.hide, pseudo or PseudoLabels(), teacher, self.keep_per_image)

    def settings(self) -> list[Setting]:
        out = [self._partial("baseline", Rebalancing())]
        out += [self._partial(f"obj{p:g}", Rebalancing(p_obj=p)) for p in self.p_obj]
        out += [self._partial(f"box{p:g}", Rebalancing(p_box=p)) for p in self.p_box]
        out += [self._partial(f"obj{po:g}+box{pb:g}", Rebalancing(p_obj=po, p_box=pb)) for po, pb in self.both]
        out += [self._pseudo_setting(method, Rebalancing(), method) for method in self.pseudo]
        out += [self._pseudo_setting(method, Rebalancing(p_obj=p), f"{method}+obj{p:g}") for method, p in self.combine]
        names = {s.name for s in out}
        for s in out:
            if s.teacher is not None and s.teacher not in names:
                raise ValueError(f"{s.name} learns from {s.teacher}'s runs: keep {s.teacher} among the settings")
        if self.oracle:
            out.append(dataclasses.replace(self._partial("hidden-ignored", Rebalancing()), hidden_as_ignore=True))
        if self.upper_bound:
            out.append(Setting("all-labels", Rebalancing(), 0.0))
        return out

    def runs(self, only: list[str] | None = None) -> list[tuple[str, Setting, int]]:
        """The (run name, setting, seed) triples to train, seed-major, so that a partial sweep still
        compares every setting; ``only`` keeps the named settings and runs (``box0.25-seed1``)."""
        settings = self.settings()
        runs = [(f"{s.name}-seed{seed}", s, seed) for seed in range(self.seeds) for s in settings]
        if only is None:
            return runs
        unknown = sorted(set(only) - {s.name for s in settings} - {name for name, _, _ in runs})
        if unknown:
            raise ValueError(f"no setting or run named {', '.join(unknown)} in this experiment; its settings: "
                             f"{', '.join(s.name for s in settings)} (runs: SETTING-seedN, N below {self.seeds})")
        return [(name, s, seed) for name, s, seed in runs if name in only or s.name in only]


def _project(spec: ExperimentSpec) -> Project:
    data = Path(spec.data)
    if (data / "project.sqlite").exists():
        return Project.open(data)
    if data.suffix in (".yaml", ".yml") and data.is_file():
        from bpr.data.formats import import_yolo
        from bpr.data.link import link_videos
        from bpr.data.formats.yolo import read_data_yaml

        project = Project.open(spec.out / "project", create=True)
        if not project.videos():
            import_yolo(project, data)
        else:  # the sweep may have been carried to another machine, and the data be elsewhere there
            link_videos(project, read_data_yaml(data)[0])
        return project
    raise FileNotFoundError(f"{data} is neither a project folder nor a YOLO data.yaml")


def _done(results_path: Path) -> dict[str, dict]:
    if not results_path.exists():
        return {}
    lines = [line for line in results_path.read_text().split("\n") if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{results_path}, line {number}, is not a result row; remove or mend it") from None
            # The last line can be one another process sharing the sweep is still appending.
    return {row["run"]: row for row in rows}


# What every run of a sweep shares: results trained under different values must not meet in one table.
# The lists of settings and the number of seeds may grow between sittings; device and workers may change.
# A spec.json written before one of these was an option lacks it, and is not held to it.
SHARED_HYPERPARAMETERS = ("hide", "keep_per_image", "model", "epochs", "imgsz", "batch", "patience", "precision",
                          "extra", "pseudo_precision", "pseudo_conf", "ignore_conf", "burn_in", "tta")


def _check_same_experiment(spec: ExperimentSpec) -> None:
    saved_path = spec.out / "spec.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    differ = [f"{key} {saved[key]!r} there, {getattr(spec, key)!r} now" for key in SHARED_HYPERPARAMETERS
              if key in saved and saved[key] != getattr(spec, key)]
    if differ:
        raise ValueError(f"{spec.out} holds an experiment with other hyperparameters ({'; '.join(differ)}): "
                         "rerun with the same values to resume it, or choose another output folder")


# What the all-labels runs depend on: they hide nothing, so sweeps that differ in nothing else share them.
UPPER_BOUND_HYPERPARAMETERS = ("model", "epochs", "imgsz", "batch", "patience", "precision", "extra")


def _take_upper_bound(spec: ExperimentSpec, runs: list[tuple[str, Setting, int]], done: dict[str, dict],
                      results_path: Path, on_message: Callable[[str], None]) -> None:
    """Append the all-labels rows of the sweep in ``spec.upper_bound_from`` that this one has yet to
    train: trained again here they would be the same runs (same labels, seeds and hyperparameters)."""
    source = Path(spec.upper_bound_from)
    if not (source / "spec.json").exists():
        raise FileNotFoundError(f"{source} holds no sweep (no spec.json) to take the all-labels runs from")
    saved = json.loads((source / "spec.json").read_text())
    differ = [f"{key} {saved.get(key)!r} there, {getattr(spec, key)!r} here" for key in UPPER_BOUND_HYPERPARAMETERS
              if saved.get(key) != getattr(spec, key)]
    their_data = Path(saved["data"])
    if not (their_data.exists() and Path(spec.data).exists() and their_data.samefile(spec.data)):
        differ.append(f"data {saved['data']!r} there, {spec.data!r} here")
    if differ:
        raise ValueError(f"{source}'s all-labels runs were trained otherwise ({'; '.join(differ)}): train them "
                         "here instead (leave out --upper-bound-from)")
    theirs = _done(source / "results.jsonl")
    for name, setting, _ in runs:
        if setting.name == "all-labels" and name not in done and name in theirs:
            with open(results_path, "a") as f:
                f.write(json.dumps(theirs[name] | {"taken_from": str(source)}) + "\n")
            on_message(f"{name}: taken from {source}")


def run_experiment(spec: ExperimentSpec, on_message: Callable[[str], None] = print,
                   on_event=None, cancel: Callable[[], bool] | None = None,
                   only: list[str] | None = None) -> list[dict]:
    """Train and evaluate every (setting, seed) not yet in results.jsonl; returns all result rows.

    ``only`` restricts this call to the named settings, or runs (``box0.25-seed1``), so that several
    processes (or machines sharing the folder) can split one sweep: each appends to the same
    results.jsonl and project.
    """
    # Everything the evaluation imports, loaded now: it first runs an hour or more into the sweep, and
    # code changed on disk by then (an upgrade, an edit) must not meet the modules already loaded.
    import bpr.results.detect  # noqa: F401  (bpr.results.evaluate imports it only when it evaluates)
    from bpr.results.evaluate import evaluate
    from bpr.selftrain import mine_round, mined_already, pseudo_quality  # (torch and ultralytics: not at import,
    # which `bpr --help` does, and before which `bpr train` quiets ultralytics)

    runs = spec.runs(only)
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_same_experiment(spec)
    replace_whole(spec.out / "spec.json", json.dumps(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.__dict__.items()}, indent=1).encode())
    results_path = spec.out / "results.jsonl"
    done = _done(results_path)
    if spec.upper_bound_from is not None and spec.upper_bound:
        _take_upper_bound(spec, runs, done, results_path, on_message)
        done = _done(results_path)
    project = _project(spec)
    by_name = {s.name: s for s in spec.settings()}
    teaching = {s.teacher for s in by_name.values() if s.teacher is not None}

    def trained(name: str, setting: Setting, seed: int) -> Run | None:
        """The run, trained, resumed or as it finished; None when another process trains it."""
        try:
            record = project.run(name)
            status = record.status
        except NotFoundError:
            record, status = None, None
            kept = spec.out / "teachers" / f"{name}.pt"
            if setting.name in teaching and kept.exists() and name in done:  # a teacher trained elsewhere
                return _restore_teacher(project, name, spec.train_config(seed, setting), kept, on_message)
        if status is not None and (pid := trained_elsewhere(record)) is not None:
            on_message(f"skipping {name}: process {pid} is training it")  # a process sharing the sweep
            return None
        if status != "finished" and cancel is not None and cancel():  # asked while evaluating
            raise TrainingCancelled(f"the sweep stopped before training {name}")
        config = spec.train_config(seed, setting)
        if status != "finished" and setting.teacher is not None:
            teacher = config.pseudo.teacher_run
            if trained(teacher, by_name[setting.teacher], seed) is None:
                return None
            if status is None and not mined_already(project, teacher, config.pseudo.round, config, spec.tta):
                on_message(f"{teacher} finds pseudo-boxes for {name}")
                mine_round(project, teacher, config.pseudo.round, config, tta=spec.tta, cancel=cancel)
        unfinished = spec.out / UNFINISHED / name
        if status is None and (unfinished / "last.pt").exists():  # its machine was lost mid-run
            record = _restore_unfinished(project, name, config, unfinished, on_message)
            status = record.status

        def keeping(event: TrainEvent) -> None:
            if event.kind == "epoch":
                _keep_unfinished(project, name, unfinished)
            if on_event is not None:
                on_event(event)

        if status is None:
            on_message(f"training {name}")
            record = train(project, config, name=name, on_event=keeping, cancel=cancel)
        elif status != "finished":
            on_message(f"resuming {name} ({status})")
            record = train(project, resume=name, on_event=keeping, cancel=cancel, device=spec.device)
        shutil.rmtree(unfinished, ignore_errors=True)
        if setting.name in teaching:  # kept, so that its students can be trained elsewhere without it
            kept = spec.out / "teachers" / f"{name}.pt"
            if not kept.exists():
                kept.parent.mkdir(exist_ok=True)
                replace_whole(kept, project.resolve_path(record.weights).read_bytes())
        return record

    def score(name: str, weights: Path) -> dict[str, float]:
        """mAP on val and test, and the test counting error at val's F1-best threshold."""
        scores, count_conf = {}, None
        for split in ("val", "test"):
            result = evaluate(project, weights, split=split, imgsz=spec.imgsz, device=spec.device,
                              count_conf=count_conf)
            if result.left_out:  # the runs of a sweep must be scored on the same frames
                raise ValueError(f"{name}: {result.left_out} fully labeled {split} frame(s) have no "
                                 f"file ({LINK_HINT}); then rerun the sweep")
            scores[f"{split}_mAP50"] = result.ultralytics["mAP50"]
            scores[f"{split}_mAP50-95"] = result.ultralytics["mAP50-95"]
            scores[f"{split}_coco_mAP50"] = result.coco["mAP50"]
            count_conf = result.f1_best_conf  # chosen on val, read on test
        return scores | {"count_conf": count_conf, "test_count_mae": result.count_mae}

    stopped = True  # until the last run is done: an error or a stop is on its way out
    try:
        for name, setting, seed in runs:
            if name in done:
                continue
            record = trained(name, setting, seed)
            if record is None:
                continue
            weights = project.resolve_path(record.weights)
            row = {"run": name, "setting": setting.name, "seed": seed, "hide": setting.hide,
                   "keep_per_image": setting.keep_per_image,
                   "p_obj": setting.rebalancing.p_obj, "p_box": setting.rebalancing.p_box,
                   "mode": "random", "method": describe_method(record.config),
                   "epochs": len(record.metrics),
                   "val_curve_mAP50": [m.get("mAP50") for m in record.metrics],
                   "measured_obj_drop": record.metrics[-1]["drop"]["obj_drop_fraction"],
                   "measured_box_drop": record.metrics[-1]["drop"]["box_drop_fraction"],
                   "software": trained_and_evaluated_with(
                       record.metrics, software(resolve_device(spec.device)))}
            pseudo = record.config.get("pseudo", {})
            if pseudo.get("teacher_run"):
                row.update(teacher=pseudo["teacher_run"], round=pseudo["round"],
                           teacher_pseudo_conf=project.run(pseudo["teacher_run"]).summary.get("pseudo_conf"),
                           teacher_pseudo_boxes=pseudo_quality(project, pseudo["teacher_run"]))
            if "teacher" in record.metrics[-1]:
                row["ema_teacher_last_epoch"] = record.metrics[-1]["teacher"]
            if pseudo.get("teacher") == "ema":  # best.pt holds the EMA model: what it finds as a teacher
                # (calibrated on val, without test-time augmentation, as the online teacher detects)
                mining = mine_round(project, name, 1, spec.train_config(seed, setting), tta=False, cancel=cancel)
                row.update(ema_teacher_pseudo_conf=mining.pseudo_conf,
                           ema_teacher_pseudo_boxes=pseudo_quality(project, name))
            if export_manifest(project, name).exists():  # its training set may have been deleted since
                row["train_labels_sha256"] = _train_labels_checksum(project, name)
            row.update(score(name, weights))
            if pseudo.get("teacher_run"):  # the teacher's own weights, as they taught (a kept teacher is
                # a retrained run, not always the one recorded under its name)
                teacher_weights = project.resolve_path(project.run(pseudo["teacher_run"]).weights)
                row.update({f"teacher_{k}": v for k, v in score(pseudo["teacher_run"], teacher_weights).items()
                            if k in ("test_mAP50", "test_count_mae")})
            with open(results_path, "a") as f:  # written at once: the sweep can stop any time
                f.write(json.dumps(row) + "\n")
            done = _done(results_path)  # with what other processes sharing the sweep have written
            on_message(f"{name}: val mAP50 {row['val_mAP50']:.4f}, test mAP50 {row['test_mAP50']:.4f}")
            write_report(spec, list(done.values()))
        stopped = False
    finally:
        project.close()
        rows = list(_done(results_path).values())
        try:  # also when stopped: the report then says which run is in training
            write_report(spec, rows)
        except Exception as error:
            if not stopped:
                raise
            on_message(f"the report was not written: {error}")  # the stop (Ctrl+C, a failed run) goes on out
    return rows


# The folder of a sweep that keeps each run in training as it stood after its last epoch (_keep_unfinished)
UNFINISHED = "unfinished"


def _train_labels_checksum(project: Project, name: str) -> str | None:
    """The checksum of the label files run ``name`` trained on, from its export's manifest; None for an
    export written before the checksum was recorded."""
    return json.loads(export_manifest(project, name).read_text()).get("labels_sha256", {}).get("train")


def _keep_unfinished(project: Project, name: str, kept: Path) -> None:
    """Copy run ``name``'s last epoch to ``kept``: its epoch records and its training labels' checksum,
    then its checkpoints (ultralytics writes them before the epoch's event); best.pt without the
    optimizer's state, which only last.pt resumes from (a fifth of the size, for a folder kept in git)."""
    import torch

    kept.mkdir(parents=True, exist_ok=True)
    saved = {"metrics": project.run(name).metrics, "train_labels_sha256": _train_labels_checksum(project, name)}
    replace_whole(kept / "run.json", json.dumps(saved).encode())
    weights = run_folder(project, name) / "train" / "weights"
    best, kept_best = weights / "best.pt", kept / "best.pt"
    # ultralytics writes best.pt only in the epochs that beat the best: copied (loaded, saved) then alone
    if best.exists() and not (kept_best.exists() and kept_best.stat().st_mtime >= best.stat().st_mtime):
        checkpoint = torch.load(best, map_location="cpu", weights_only=False)  # our own file
        replace_whole(kept_best, lambda f: torch.save(checkpoint | {"optimizer": None}, f))
    if (weights / "last.pt").exists():
        replace_whole(kept / "last.pt", (weights / "last.pt").read_bytes())


def _restore_unfinished(project: Project, name: str, config: TrainConfig, kept: Path,
                        on_message: Callable[[str], None]) -> Run:
    """Run ``name`` recorded as stopped at the epoch its checkpoint in ``kept`` holds, to be resumed:
    its training set exported again, and refused if its labels are not the ones it trained on."""
    import torch

    saved = json.loads((kept / "run.json").read_text())
    export_run_training_set(project, name, config)
    if _train_labels_checksum(project, name) != saved["train_labels_sha256"]:
        raise ValueError(f"{kept} holds {name} as it trained on other labels than it would here (the data, or "
                         f"its teacher's pseudo-boxes, differ): delete that folder to train {name} from the start")
    epoch = torch.load(kept / "last.pt", map_location="cpu", weights_only=False)["epoch"] + 1  # (0-based there)
    weights = run_folder(project, name) / "train" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for file in ("best.pt", "last.pt"):
        if (kept / file).exists():
            shutil.copyfile(kept / file, weights / file)
    project.create_run(name, config.to_dict())
    # (records past the checkpoint's epoch, from a copy stopped between the two, are trained again)
    project.update_run(name, status="cancelled", owner=None, error=f"its machine was lost after epoch {epoch}",
                       metrics=[m for m in saved["metrics"] if m["epoch"] <= epoch])
    on_message(f"{name}: going on after epoch {epoch}, kept in {kept}")
    return project.run(name)


def _restore_teacher(project: Project, name: str, config: TrainConfig, weights: Path,
                     on_message: Callable[[str], None]) -> Run:
    """A teacher trained before (its best.pt kept in the sweep's teachers/) recorded as a finished run,
    with the training set it was trained on exported again (the hidden boxes follow from the seed), and
    its epochs' losses and validation as the checkpoint keeps them (its row and curves in the app)."""
    from bpr.data.dataset import export_training_set
    from bpr.learn.training import run_dataset

    on_message(f"{name}: using the kept {weights}")
    project.create_run(name, config.to_dict())
    try:
        export_training_set(project, run_dataset(project, name), config)
    except BaseException:
        project.update_run(name, status="failed", error="its training set could not be exported")
        raise
    project.update_run(name, status="finished", weights=project.stored_path(weights), owner=None,
                       metrics=_kept_epochs(weights))
    return project.run(name)


# ultralytics' names in a checkpoint's train_results (its results.csv) for what an epoch record holds
KEPT_EPOCH_COLUMNS = {f"train/{loss}": loss for loss in ("box_loss", "cls_loss", "dfl_loss")} | METRIC_NAMES


def _kept_epochs(weights: Path) -> list[dict]:
    """The epoch records of a kept checkpoint's training, up to the epoch it was saved at, from what
    ultralytics saves in it; no drop counts, times or software (it does not keep them)."""
    import torch

    results = torch.load(weights, map_location="cpu", weights_only=False).get("train_results") or {}
    return [{"epoch": int(epoch), **{short: float(results[column][i]) for column, short in KEPT_EPOCH_COLUMNS.items()
                                     if column in results}, "drop": {}}
            for i, epoch in enumerate(results.get("epoch", []))]


def trained_and_evaluated_with(epochs: list[dict], evaluation: dict[str, str]) -> dict[str, str]:
    """A result row's software: the versions alone when every epoch and the evaluation ran on the same
    versions and processor; else, for each that changed, which epochs ran on which (a run resumed on
    another machine), e.g. torch "2.14.1 on the CPU for epochs 1-76, 2.11.0 on a GPU (NVIDIA H200) for
    epochs 77-200 and evaluation". ``evaluation`` is training.software(device) of this process."""
    spans: list[list] = []  # [first epoch, last epoch, software or None where not recorded]
    for epoch in epochs:
        used = epoch.get("software")
        if spans and spans[-1][2] == used and spans[-1][1] == epoch["epoch"] - 1:
            spans[-1][1] = epoch["epoch"]
        else:
            spans.append([epoch["epoch"], epoch["epoch"], used])
    versions = {k: v for k, v in evaluation.items() if k != "device"}
    if all(used == evaluation for *_, used in spans):
        return versions

    def ran(used: dict | None, key: str) -> str:
        """E.g. "2.11.0 on a GPU (NVIDIA H200)" for a version, "the CPU" for the device."""
        if used is None:
            return "not recorded"
        processor = "the CPU" if used["device"] == "CPU" else f"a GPU ({used['device']})"
        return processor if key == "device" else f"{used[key]} on {processor}"

    described = dict(versions)
    changed = [key for key in evaluation if len({(used or {}).get(key) for *_, used in spans} | {evaluation[key]}) > 1]
    if changed != ["device"]:  # a version's description names the processors already
        changed = [key for key in changed if key != "device"]
    for key in changed:
        parts = [f"{ran(used, key)} for epoch {first}" if first == last
                 else f"{ran(used, key)} for epochs {first}-{last}" for first, last, used in spans]
        if spans and spans[-1][2] == evaluation:
            parts[-1] += " and evaluation"
        else:
            parts.append(f"{ran(evaluation, key)} for evaluation")
        described[key] = ", ".join(parts)
    return described


def software_line(rows: list[dict]) -> str:
    """Which versions the rows were made with; says so when they differ, and which runs lack a record."""
    made: dict[str, list[str]] = {}
    for row in rows:
        versions = row.get("software")
        key = ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not recorded"
        made.setdefault(key, []).append(row["run"])
    unrecorded = sorted(made.pop("not recorded", []))
    if len(made) > 1:
        return ("**The runs were made with different software**, so they may not compare: "
                + "; ".join(f"{key}: {', '.join(sorted(runs))}" for key, runs in sorted(made.items()))
                + (f"; not recorded: {', '.join(unrecorded)}" if unrecorded else "") + ".")
    line = f"Software: {next(iter(made))}." if made else "Software: not recorded."
    if made and unrecorded:  # a record missing is not a difference shown
        line += f" Not recorded for {', '.join(unrecorded)}."
    return line


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; no spread (None) from a single seed."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summary_table(spec: ExperimentSpec, rows: list[dict]) -> list[dict]:
    """One row per setting: seeds done, mean ± sd of val/test mAP50 and the test gain over baseline."""
    order = [s.name for s in spec.settings()]
    by_setting: dict[str, list[dict]] = {}
    for row in rows:
        by_setting.setdefault(row["setting"], []).append(row)
    baseline = {r["seed"]: r["test_mAP50"] for r in by_setting.get("baseline", [])}
    upper = {r["seed"]: r["test_mAP50"] for r in by_setting.get("all-labels", [])}
    table = []
    for name in order:
        runs = by_setting.get(name)
        if not runs:
            continue
        # the baseline's gain over itself is no result: shown as "–", not as 0.0 ± 0.0
        gains = [] if name == "baseline" else \
            [r["test_mAP50"] - baseline[r["seed"]] for r in runs if r["seed"] in baseline]
        out = {"setting": name, "p_obj": runs[0]["p_obj"], "p_box": runs[0]["p_box"], "mode": runs[0]["mode"],
               "hide": runs[0]["hide"], "keep_per_image": runs[0].get("keep_per_image", 0), "seeds": len(runs)}
        for key in ("val_mAP50", "test_mAP50", "test_coco_mAP50"):
            out[key], out[key + "_sd"] = _mean_sd([r[key] for r in runs])
        out["test_gain"], out["test_gain_sd"] = _mean_sd(gains) if gains else (None, None)
        # the gap won back, (method - baseline) / (all labels - baseline), paired by seed
        won = [] if name in ("baseline", "all-labels") else \
            [(r["test_mAP50"] - baseline[r["seed"]]) / (upper[r["seed"]] - baseline[r["seed"]]) for r in runs
             if r["seed"] in baseline and r["seed"] in upper and upper[r["seed"]] != baseline[r["seed"]]]
        out["gap_won"], out["gap_won_sd"] = _mean_sd(won) if won else (None, None)
        out["seeds_above_baseline"] = sum(g > 0 for g in gains) if gains else None
        counted = [r["test_count_mae"] for r in runs if "test_count_mae" in r]
        out["test_count_mae"], out["test_count_mae_sd"] = _mean_sd(counted) if counted else (None, None)
        for key in ("measured_obj_drop", "measured_box_drop"):  # what the loss really dropped, last epoch
            measured = [r[key] for r in runs if r[key] is not None]   # None: that loss dropped nothing
            out[key] = statistics.fmean(measured) if measured else None
        table.append(out)
    return table


FLAT_RISE = 0.05   # a curve is flat when its last tenth is under 5 % above the tenth before
LEARNED = LEARNED_MAP50  # and a model has learned when that last tenth reaches it


@dataclass
class Plateau:
    epochs_before: str   # e.g. "49–54"
    before: float        # mean val mAP50 over those epochs
    epochs_last: str
    last: float
    epochs_unmixed: str | None = None   # the epochs trained without mosaic, left out of the verdict
    unmixed: float | None = None        # their mean val mAP50

    @property
    def verdict(self) -> str:
        if self.last < LEARNED:
            return "not learned"
        return "flat" if self.last <= self.before * (1 + FLAT_RISE) else "still rising"


def plateau(curve: list[float | None], mosaic_epochs: int | None = None) -> Plateau | None:
    """A val mAP50 curve's last tenth of epochs (3 at least) against the tenth before; None when the
    curve is shorter than two such windows.

    Only the first ``mosaic_epochs`` count. ultralytics trains its last ``close_mosaic`` epochs
    without mosaic, and val mAP50 steps up there by design (1.8 points at once in a 200-epoch
    brittlestar run whose previous 30 epochs were level), which says the augmentation changed, not
    that the model was still learning. Those epochs' mean is kept beside the verdict.
    """
    values = [v or 0.0 for v in curve]
    mixed = values if mosaic_epochs is None else values[:max(mosaic_epochs, 0)]
    n = len(mixed)
    width = max(3, n // 10)
    if n < 2 * width:
        return None
    out = Plateau(f"{n - 2 * width + 1}–{n - width}", statistics.fmean(mixed[-2 * width:-width]),
                  f"{n - width + 1}–{n}", statistics.fmean(mixed[-width:]))
    if len(values) > n:
        out.epochs_unmixed, out.unmixed = f"{n + 1}–{len(values)}", statistics.fmean(values[n:])
    return out


def mosaic_epochs(spec: ExperimentSpec) -> int:
    """The epochs before ultralytics switches mosaic off for the last ``close_mosaic``; all of them
    when the switch is not within the schedule (0, or at least the schedule's length: off from the start)."""
    from bpr.offline import configure

    configure()  # before ultralytics is imported
    from ultralytics.cfg import DEFAULT_CFG

    close = int(spec.extra.get("close_mosaic", DEFAULT_CFG.close_mosaic))
    return spec.epochs - close if 0 < close < spec.epochs else spec.epochs


def late_curves(spec: ExperimentSpec, rows: list[dict], windows: int = 5) -> list[str]:
    """Markdown: each run's mean val mAP50 (points) over the last ``windows`` spans of a twentieth of the
    epochs trained with mosaic, and over the epochs without it, to see whether and when curves level."""
    mixed = mosaic_epochs(spec)
    width = max(1, spec.epochs // 20)
    spans = [(end - width + 1, end) for end in range(mixed - (windows - 1) * width, mixed + 1, width) if end >= width]
    if mixed < spec.epochs:
        spans.append((mixed + 1, spec.epochs))
    if not spans:
        return []
    names = [s.name for s in spec.settings()]
    lines = ["| run | " + " | ".join(f"{a}–{b}" + (", no mosaic" if a > mixed else "") for a, b in spans) + " |",
             "|---" * (len(spans) + 1) + "|"]
    for row in sorted((r for r in rows if r["setting"] in names),
                      key=lambda r: (names.index(r["setting"]), r["seed"])):
        curve = [v or 0.0 for v in row["val_curve_mAP50"]]
        cells = [f"{statistics.fmean(curve[a - 1:b]) * 100:.2f}" if len(curve) >= b else "–" for a, b in spans]
        lines.append(f"| {row['setting']}, seed {row['seed']} | " + " | ".join(cells) + " |")
    return lines


def teacher_lines(rows: list[dict]) -> list[str]:
    """Markdown: per teacher, its round, its own test mAP50 and counting error (where recorded), the
    score its pseudo-boxes start at and their precision and recall. An EMA run's teacher is its own
    best.pt (the EMA model), mining once training is over."""
    seen = {}  # teacher: (round, test mAP50, count error, score, quality)
    for row in rows:
        if "teacher_pseudo_boxes" in row:
            seen[row["teacher"]] = (str(row["round"]), row.get("teacher_test_mAP50"),
                                    row.get("teacher_test_count_mae"), row.get("teacher_pseudo_conf"),
                                    row["teacher_pseudo_boxes"])
        if "ema_teacher_pseudo_boxes" in row:
            seen[f"{row['run']} (its EMA model, best epoch)"] = (
                "online", row["test_mAP50"], row["test_count_mae"], row["ema_teacher_pseudo_conf"],
                row["ema_teacher_pseudo_boxes"])
    if not seen:
        return []
    lines = ["| teacher | for round | its test mAP50 | its test count error | from score | pseudo-boxes "
             "| hidden boxes | precision | recall |", "|---|---|---|---|---|---|---|---|---|"]
    for teacher, (round, mAP, mae, score, q) in sorted(seen.items(), key=lambda item: (item[1][0], item[0])):
        lines.append(f"| {teacher} | {round} | {'–' if mAP is None else f'{mAP * 100:.1f}'} | "
                     f"{'–' if mae is None else f'{mae:.2f}'} | {'–' if score is None else f'{score:.3g}'} | "
                     f"{q['pseudo_boxes']} | {q['hidden_boxes']} | {q['precision'] * 100:.1f} % | "
                     f"{q['recall'] * 100:.1f} % |")
    return lines


def label_pairing(rows: list[dict]) -> str | None:
    """Whether the runs of each seed trained on the same labels, by the checksum of their training
    label files; None when no row carries one (rows written before it was recorded)."""
    checked = [r for r in rows if r.get("train_labels_sha256")]
    if not checked:
        return None
    groups: dict[tuple[int, float, int], dict[str, list[str]]] = {}
    for r in sorted(checked, key=lambda r: r["run"]):
        hiding = (r["seed"], r["hide"], r.get("keep_per_image", 0))
        groups.setdefault(hiding, {}).setdefault(r["train_labels_sha256"], []).append(r["run"])
    unpaired = ["; ".join(" and ".join(runs) + f" on labels {digest[:8]}" for digest, runs in by_digest.items())
                for by_digest in groups.values() if len(by_digest) > 1]
    if unpaired:
        return ("**Not paired**: runs of one seed trained on different labels, so their gains compare "
                "different training sets: " + " | ".join(unpaired) + ".")
    return (f"Training labels: the runs of each seed trained on the same labels (checksum of the label "
            f"files; {len(checked)} of {len(rows)} runs carry one).")


def _fraction(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def hidden_words(spec: ExperimentSpec) -> str:
    """Which training boxes the sweep hides, in words."""
    if spec.keep_per_image:
        return f"all training boxes hidden but {spec.keep_per_image} per image"
    return f"{spec.hide:.0%} of training boxes hidden"


def in_training_line(spec: ExperimentSpec) -> str | None:
    """Which runs the sweep keeps in ``unfinished/``, and after which epoch; None when it keeps none."""
    kept = sorted((spec.out / UNFINISHED).glob("*/run.json"))
    if not kept:
        return None
    runs = []
    for path in kept:
        epochs = [m["epoch"] for m in json.loads(path.read_text())["metrics"]]
        runs.append(f"{path.parent.name} after epoch {max(epochs, default=0)} of {spec.epochs}")
    return f"In training, kept in `{UNFINISHED}/` (the sweep's command goes on from there): {', '.join(runs)}."


def write_report(spec: ExperimentSpec, rows: list[dict]) -> None:
    """results.md, results.csv, mAP50_vs_drop.png and val_curves.png in spec.out."""
    table = summary_table(spec, rows)
    if not table:
        return
    names = {s.name for s in spec.settings()}
    finished = [r for r in rows if r["setting"] in names and r["seed"] < spec.seeds]
    columns = ["setting", "p_obj", "p_box", "mode", "hide", "keep_per_image", "seeds", "val_mAP50", "val_mAP50_sd",
               "test_mAP50", "test_mAP50_sd", "test_coco_mAP50", "test_coco_mAP50_sd", "test_gain",
               "test_gain_sd", "gap_won", "gap_won_sd", "seeds_above_baseline", "test_count_mae",
               "test_count_mae_sd", "measured_obj_drop", "measured_box_drop"]
    csv_text = io.StringIO(newline="")
    writer = csv.DictWriter(csv_text, columns)
    writer.writeheader()
    writer.writerows(table)
    replace_whole(spec.out / "results.csv", csv_text.getvalue().encode())

    def pm(mean, sd, scale=100):
        if mean is None:
            return "–"
        return f"{mean * scale:.1f}" if sd is None else f"{mean * scale:.1f} ± {sd * scale:.1f}"

    lines = [
        f"Data: `{spec.data}`; {hidden_words(spec)} (seeded); {spec.model} from scratch, "
        f"{spec.epochs} epochs at {spec.imgsz} px, batch {spec.batch}"
        + "".join(f", {k}={v}" for k, v in spec.extra.items()) + ". mAP50 in points (×100), mean ± sd "
        "over seeds; ultralytics' AP (101-point interpolation) of best.pt, scored by `bpr evaluate`, which "
        f"sees frames as `bpr detect` does at {spec.imgsz} px, and COCO's for test. Dropped: the "
        "fraction of negatives (obj) and of low-IoU positives (box) the loss left out in the last epoch.",
        "",
        f"Finished: {len(finished)} of {len(names) * spec.seeds} runs ({len(names)} settings x {spec.seeds} "
        f"seeds). {software_line(rows)}",
        "",
        *([training, ""] if (training := in_training_line(spec)) else []),
        *([f"Not in this table: the finished runs of {', '.join(other)} (settings this sitting did not ask for).",
           ""]
          if (other := sorted({r["setting"] for r in rows} - names)) else []),
        *([pairing, ""] if (pairing := label_pairing(finished)) else []),
        *([f"The all-labels runs were taken from `{taken}` (they hide nothing, so they are this sweep's too).",
           ""] if (taken := next((r["taken_from"] for r in finished if "taken_from" in r), None)) else []),
        ("| setting | p_obj | p_box | mode | seeds | val mAP50 | test mAP50 | test mAP50 (COCO) "
         "| test gain vs baseline | gap won back | test count error | dropped obj / box |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        above = "" if r["seeds_above_baseline"] is None else f" ({r['seeds_above_baseline']}/{r['seeds']} seeds up)"
        lines.append(f"| {r['setting']} | {r['p_obj']} | {r['p_box']} | {r['mode']} | {r['seeds']} | "
                     f"{pm(r['val_mAP50'], r['val_mAP50_sd'])} | {pm(r['test_mAP50'], r['test_mAP50_sd'])} | "
                     f"{pm(r['test_coco_mAP50'], r['test_coco_mAP50_sd'])} | "
                     f"{pm(r['test_gain'], r['test_gain_sd'])}{above} | "
                     f"{pm(r['gap_won'], r['gap_won_sd'])}{'' if r['gap_won'] is None else ' %'} | "
                     f"{pm(r['test_count_mae'], r['test_count_mae_sd'], scale=1)} | "
                     f"{_fraction(r['measured_obj_drop'])} / {_fraction(r['measured_box_drop'])} |")
    lines += ["", "Gap won back: (setting − baseline) / (all labels − baseline) in test mAP50, per seed. Test "
              "count error: mean absolute error of each test frame's count of detections against its labels, at "
              "the confidence of the run's best F1 on val."]
    teachers = teacher_lines(finished)
    if teachers:
        lines += ["", "Each teacher's pseudo-boxes against the boxes hidden from it (IoU 0.5, one to one, most "
                  "confident first; precision is a lower bound: an animal nobody boxed counts as wrong):", "",
                  *teachers]
    mixed = mosaic_epochs(spec)
    verdicts = [(r["seed"], plateau(r["val_curve_mAP50"], mixed))
                for r in sorted(rows, key=lambda r: r["seed"]) if r["setting"] == "baseline"]
    if verdicts:
        lines += ["", (f"Has the baseline learned and flattened? Its mean val mAP50 (ultralytics' validation "
                       f"of each epoch, as below) over the last tenth of the epochs trained with mosaic "
                       f"against the tenth before: flat below a {FLAT_RISE:.0%} rise, learned from "
                       f"{LEARNED * 100:.0f} point. The last {spec.epochs - mixed} epochs, trained without "
                       "mosaic (ultralytics' `close_mosaic`), step up by design and are shown apart. A "
                       "comparison counts only once the baseline is flat.")]
        for seed, v in verdicts:
            if v is None:
                lines.append(f"- seed {seed}: too few epochs to tell")
                continue
            line = (f"- seed {seed}: epochs {v.epochs_before}: {v.before * 100:.2f} points, epochs "
                    f"{v.epochs_last}: {v.last * 100:.2f} points: **{v.verdict}**")
            if v.unmixed is not None:
                line += f"; then epochs {v.epochs_unmixed}, without mosaic: {v.unmixed * 100:.2f} points"
            lines.append(line)
    curves = late_curves(spec, finished)
    if curves:
        lines += ["", ("Val mAP50 during training, mean over each span of epochs (points). These are "
                       "ultralytics' own validation of each epoch, which pads each frame by half a stride in "
                       "its rectangular batches, so they can differ from the val column above by a point or "
                       "two:"), "", *curves]
    replace_whole(spec.out / "results.md", ("\n".join(lines) + "\n").encode())
    _plot(spec, table)
    _plot_curves(spec, rows)


def _plot(spec: ExperimentSpec, table: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    base = next((r for r in table if r["setting"] == "baseline"), None)
    for label, key, pick in (("objectness drop", "p_obj", lambda r: r["p_box"] == 0 and r["mode"] == "random"),
                             ("box drop", "p_box", lambda r: r["p_obj"] == 0)):
        points = sorted((r[key], r["test_mAP50"] * 100, (r["test_mAP50_sd"] or 0) * 100) for r in table
                        if pick(r) and (r[key] > 0 or r["setting"] == "baseline"))
        if len(points) > 1:
            x, y, e = zip(*points)
            ax.errorbar([v * 100 for v in x], y, yerr=e, marker="o", capsize=3, label=label)
    if base:
        ax.axhline(base["test_mAP50"] * 100, color="grey", ls=":", label="baseline")
    ax.set(xlabel="drop (%)", ylabel="test mAP50 (points)", title="mAP50 against drop percentage")
    if ax.get_legend_handles_labels()[0]:  # none before the baseline or a drop has a result
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(spec.out / "mAP50_vs_drop.png")
    plt.close(fig)


def _plot_curves(spec: ExperimentSpec, rows: list[dict]) -> None:
    """Each run's val mAP50 per epoch: whether the runs had learned, and flattened, when they stopped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    colors = {name: f"C{i % 10}" for i, name in enumerate(s.name for s in spec.settings())}
    labelled = set()
    for row in sorted(rows, key=lambda r: (r["setting"], r["seed"])):
        points = [(epoch, value * 100) for epoch, value in enumerate(row["val_curve_mAP50"], 1)
                  if value is not None]
        if not points:
            continue
        x, y = zip(*points)
        label = None if row["setting"] in labelled else row["setting"]
        labelled.add(row["setting"])
        ax.plot(x, y, color=colors.get(row["setting"], "k"), lw=1, label=label)
    ax.set(xlabel="epoch", ylabel="val mAP50 (points)", title="Validation mAP50 during training")
    if labelled:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(spec.out / "val_curves.png")
    plt.close(fig)
