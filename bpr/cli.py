"""The ``bpr`` command: build the demo, import labels, link videos, export training sets, show a project."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bpr import __version__
from bpr.config import KEEP_CONF, Option, TrainConfig, default, from_flat, options


class _Bar:
    """A tqdm progress bar fed by the library's progress(done, total, message) callbacks."""

    def __init__(self, unit: str = "it"):
        self.unit = unit
        self.bar = None
        self.message = None

    def __call__(self, done: int, total: int, message: str) -> None:
        from tqdm import tqdm

        if self.bar is None or message != self.message:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total or None, desc=message, unit=self.unit, file=sys.stderr,
                            leave=False, disable=None)
            self.message = message
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _graceful_stop(message: str):
    """The first Ctrl+C or SIGTERM sets the yielded stop event (the work ends cleanly at its next
    check); a second one interrupts at once. SIGTERM is how `kill` and a cluster's time limit (SLURM
    sends it, then SIGKILL after a grace period) stop a job: stopping after the batch leaves no
    checkpoint half-written. The previous handlers are restored afterwards."""
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{message}", file=sys.stderr)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _open(path: str):
    from bpr.data.store import Project

    return Project.open(path)


def _report(report) -> None:
    for line in report.lines():
        print(line)


def cmd_demo(args) -> None:
    from bpr.demo import build_demo

    folder = Path(args.path).absolute()
    if (folder / "project.sqlite").exists():
        print(f"{folder} already holds a project; using it as it is (delete the folder to rebuild)")
        return
    bar = _Bar()
    try:
        report = build_demo(folder, seed=args.seed, progress=bar)
    finally:
        bar.close()
    print(f"demo project written to {folder}")
    _report(report)


def cmd_import(args) -> None:
    from bpr.data.registry import FORMATS, import_source

    fmt = FORMATS[args.format]
    bar = _Bar()
    try:
        report = import_source(args.project, fmt.name, args.source,
                               _settings(fmt.import_options, args) if fmt.import_options else None, progress=bar,
                               strict=args.strict)
    finally:
        bar.close()
    _report(report)


def cmd_link_videos(args) -> None:
    from bpr.data.link import describe_links, link_videos

    with _open(args.project) as project:
        result = link_videos(project, args.folders)
    print(describe_links(result))
    for line in result["unreadable"]:
        print(f"unreadable: {line}")
    for line in result["frame_count_mismatch"]:
        print(f"warning: {line}")


def cmd_export(args) -> None:
    from bpr.data.registry import FORMATS, export_to

    fmt = FORMATS[args.format]
    bar = _Bar("frame")
    with _open(args.project) as project:
        try:
            lines = export_to(project, fmt.name, args.out, _settings(fmt.export_options, args), progress=bar)
        finally:
            bar.close()
    for line in lines:
        print(line)


class _TrainProgress:
    """Prints a training's events: a bar per run, a line per epoch and per round's mining."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.kind == "start":
            self.close()
            print(event.message)
            total = event.epochs * event.batches
            self.bar = tqdm(total=total, initial=(event.epoch - 1) * event.batches, unit="batch",
                            file=sys.stderr, dynamic_ncols=True)
        elif event.kind == "batch" and self.bar is not None:
            self.bar.update(1)
            fraction = event.drop.get("obj_drop_fraction")
            self.bar.set_description(f"epoch {event.epoch}/{event.epochs}")
            self.bar.set_postfix({k.removesuffix("_loss"): f"{v:.3g}" for k, v in event.losses.items()}
                                 | ({"obj drop": f"{fraction:.2f}"} if fraction is not None else {}))
        elif event.kind == "epoch":
            line = f"epoch {event.epoch}/{event.epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in event.metrics.items())
            (self.bar.write if self.bar is not None else print)(line)
        elif event.kind == "mine":
            self.close()
            print(f"\r{event.message}", end="\n" if event.batch == event.batches else "", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _quiet_ultralytics(args) -> None:
    import os

    if not args.verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # our progress bar replaces ultralytics' output


def cmd_train(args) -> None:
    _quiet_ultralytics(args)
    from bpr.learn.training import TrainingCancelled, train

    if args.resume is not None:
        _refuse_changed_settings(args)
    config = None if args.resume is not None else _settings(TrainConfig, args)
    # resumed: on the device it trained on, unless another is named
    device = args.device if args.resume is not None and args.device != default(TrainConfig, "device") else None
    progress = _TrainProgress()
    with _open(args.project) as project, \
            _graceful_stop("stopping after this batch (Ctrl+C again to stop at once)") as stop:
        try:
            run = train(project, config, name=args.name, resume=args.resume, on_event=progress,
                        cancel=stop.is_set, device=device)
        except TrainingCancelled as e:
            progress.close()
            name = args.resume or args.name or project.runs()[-1].name  # the run just stopped
            print(f"{e}; resume with: bpr train {args.project} --resume {name}")
            raise SystemExit(130) from None
        finally:
            progress.close()
        _choose_thresholds(project, run)
    _print_run(run)


def _refuse_changed_settings(args) -> None:
    """A resumed run goes on with the settings it started with, as ultralytics' resume does: a setting
    flag given with --resume would be ignored, so it is refused (the device alone may change)."""
    given = [o.cli_flag for o in options(TrainConfig)
             if o.name != "device" and getattr(args, o.name) not in (o.default, [])]
    if given:
        raise ValueError(f"{', '.join(given)}: run {args.resume} goes on with the settings it started with "
                         "(bpr runs shows them); train a new run to change them")


def _choose_thresholds(project, run) -> None:
    """Choose and keep the run's counting thresholds on its val frames, and say so."""
    from bpr.results.evaluate import choose_thresholds

    chosen = choose_thresholds(project, run.name, device=run.config.get("device", "auto"))
    if chosen is None:
        print(f"run {run.name}: no fully labeled val frame to choose counting thresholds on; counts use "
              "--conf (default 0.25)")
        return
    species = ", ".join(f"{name} {conf:.3f}" for name, conf in chosen["species"].items())
    print(f"run {run.name}: counting thresholds chosen on val (F1-best): {species or 'none'}; "
          f"other species {chosen['overall']:.3f}")


def cmd_selftrain(args) -> None:
    _quiet_ultralytics(args)
    from bpr.config import SelfTraining
    from bpr.learn.training import TrainingCancelled
    from bpr.selftrain import selftrain

    config, settings = _settings(TrainConfig, args), _settings(SelfTraining, args)
    progress = _TrainProgress()
    with _open(args.project) as project, \
            _graceful_stop("stopping after this batch (Ctrl+C again to stop at once)") as stop:
        try:
            result = selftrain(project, config, args.name, settings, from_run=args.from_run,
                               on_event=progress, cancel=stop.is_set)
        except TrainingCancelled as e:
            progress.close()
            print(f"{e}; the same command goes on")
            raise SystemExit(130) from None
        finally:
            progress.close()
        for run in result.runs:
            if run.status == "finished" and "thresholds" not in (run.summary or {}):
                _choose_thresholds(project, run)
    for mining in result.mining:
        print(mining)
    if result.stopped_early:
        print(f"stopped early: {result.stopped_early}")
    for run in result.runs:
        _print_run(run)


def _print_run(run) -> None:
    from bpr.learn.training import describe_method, trained_on

    config, metrics = run.config, run.metrics
    print(f"run {run.name}: {run.status}, {len(metrics)}/{config['epochs']} epochs, "
          f"{config['model']} at {config['imgsz']} px")
    print(f"  method: {describe_method(config)}")
    if run.not_learned:
        print(f"  NOT LEARNED: its best val mAP50 is {run.best_map50:.4f}; its detections would be noise. Train "
              "longer or on more labels")
    if metrics:
        last = metrics[-1]
        drop = last.get("drop", {})
        print(f"  last epoch: val mAP50 {last.get('mAP50', float('nan')):.4f}, "
              f"mAP50-95 {last.get('mAP50-95', float('nan')):.4f}")
        measured = {name: drop.get(key) for name, key in
                    (("objectness", "obj_drop_fraction"), ("box", "box_drop_fraction"))}
        if any(v is not None for v in measured.values()):
            print("  measured drop (last epoch): " + ", ".join(
                f"{name} {'-' if v is None else f'{v:.3f}'}" for name, v in measured.items()))
        if teacher := last.get("teacher"):
            conf = teacher.get("pseudo_conf")
            never = conf is not None and conf >= 1.0 and config.get("pseudo", {}).get("pseudo_conf") is None
            print(f"  EMA teacher (last epoch): {teacher['pseudo_boxes']} pseudo-boxes"
                  + (f" from score {conf:.3g}" if conf is not None else "")
                  + (" (its detections on val never reached the pseudo-box precision)" if never else "")
                  + f", {teacher['ignore_regions']} ignore regions")
        if where := trained_on(metrics):
            print(f"  trained on {where}")
    if (conf := (run.summary or {}).get("pseudo_conf")) is not None:
        print(f"  as a teacher: pseudo-boxes from score {conf:.3g}")
    if "best" in (run.summary or {}):  # a teacher trained elsewhere has none
        best = run.summary["best"]
        print(f"  best weights: val mAP50 {best.get('mAP50', float('nan')):.4f}, "
              f"mAP50-95 {best.get('mAP50-95', float('nan')):.4f}")
    if run.weights:
        print(f"  weights: {run.weights}")
    if run.error:
        print(f"  error: {run.error.splitlines()[0]}")


def cmd_runs(args) -> None:
    from bpr.learn.training import describe_method, trained_on

    with _open(args.project) as project:
        runs = project.runs()
    if args.json:
        print(json.dumps([run.to_dict() for run in runs], indent=1))
        return
    if not runs:
        print("no runs yet: start one with `bpr train`")
    width = max((len(run.name) for run in runs), default=0)
    for run in runs:
        config, metrics = run.config, run.metrics
        if not run.is_training:  # a record for detections with outside weights
            print(f"{run.name:{width}} {run.status:11} outside weights {config.get('external_weights', '-')}")
            continue
        best = run.best_map50
        left = _time_left(metrics, config["epochs"]) if run.status == "running" else ""
        where = trained_on(metrics)
        note = f" ({run.not_learned_note})" if run.not_learned_note else ""
        print(f"{run.name:{width}} {run.status:11} {config['model']:14} "
              f"{len(metrics):>3}/{config['epochs']:<3} ep  best val mAP50 {'-' if best is None else f'{best:.4f}'}"
              f"{note}  {describe_method(config)}{', on ' + where if where else ''}{left}")


def _time_left(metrics: list[dict], epochs: int) -> str:
    """', 88 s an epoch, about 4.3 h left' from the epochs' end times. The median epoch, so that a
    pause between sittings (a resumed run) does not count as training time."""
    times = [m["time"] for m in metrics if "time" in m]
    if len(times) < 2:
        return ""
    per_epoch = statistics.median(b - a for a, b in zip(times, times[1:]))
    left = per_epoch * (epochs - len(metrics))
    left_text = f"{left / 60:.0f} min" if left < 7200 else f"{left / 3600:.1f} h"
    return f", {per_epoch:.0f} s an epoch, about {left_text} left"


def cmd_evaluate(args) -> None:
    from bpr.results.evaluate import evaluate
    from bpr.data.store import LINK_HINT

    with _open(args.project) as project:
        weights = _weights(project, args)
        bar = _Bar("frame")
        try:
            result = evaluate(project, weights, split=args.split, conf=args.conf, imgsz=args.imgsz,
                              device=args.device, pr_curve=args.pr_curve, progress=bar)
        finally:
            bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return
    print(f"{result.split}: {result.images} fully labeled frames, {result.boxes} boxes; "
          f"weights {result.weights} at {result.imgsz} px")
    if result.left_out:
        print(f"  warning: {result.left_out} fully labeled frame(s) left out, without their file ({LINK_HINT})")
    print(f"  mAP50    COCO {result.coco['mAP50']:.4f}   ultralytics {result.ultralytics['mAP50']:.4f}")
    print(f"  mAP50-95 COCO {result.coco['mAP50-95']:.4f}   ultralytics {result.ultralytics['mAP50-95']:.4f}")
    print(f"  at conf {result.conf}: precision {result.precision:.3f}, recall {result.recall:.3f}")
    for row in result.per_class:
        if row["boxes"]:
            print(f"  {row['name']:30} {row['boxes']:6} boxes  mAP50 COCO {row['coco_mAP50']:.4f}")
    print("  (COCO: pycocotools' 101-point step lookup; ultralytics: interpolated envelope, trapezoid)")
    if result.pr_curve:
        print(f"  PR curve: {result.pr_curve}")


def _weights(project, args) -> Path:
    """The weights of --run or --weights."""
    if args.weights:
        return Path(args.weights)
    if not args.run:
        raise ValueError("give --run RUN or --weights FILE")
    run = project.run(args.run)
    if not run.weights:
        raise ValueError(f"run {args.run} has no weights (status {run.status})")
    return project.resolve_path(run.weights)


def cmd_detect(args) -> None:
    from bpr.results.detect import detect
    from bpr.data.store import counted, source_counts

    bar = _Bar("frame")
    try:
        with _graceful_stop("stopping after this batch; run the same command again to continue") as stop, \
                _open(args.project) as project:
            _warn_if_not_learned(project, args.run)
            summary = detect(project, run=args.run, weights=args.weights, videos=args.video,
                             stride=args.stride, start=args.start, stop=args.stop, batch=args.batch,
                             min_conf=args.min_conf, imgsz=args.imgsz, device=args.device, progress=bar,
                             cancel=stop.is_set, ray=args.ray)
    finally:
        bar.close()
    state = "stopped early (run again to continue)" if summary.cancelled else "done"
    sources = counted(source_counts(summary.videos, summary.images))
    print(f"detection run {summary.run}: {state}; {summary.frames} frames of {sources} "
          f"in {summary.seconds:.1f} s ({summary.fps:.1f} frames/s), {summary.detections} detections; "
          f"{summary.skipped} frames were already done")


def _warn_if_not_learned(project, name: str | None) -> None:
    """As the app's Review panel does: detections of a run that never learned are noise."""
    from bpr.data.store import NotFoundError

    try:
        record = project.run(name) if name else None
    except NotFoundError:
        return  # detect says so
    if record is not None and record.not_learned:
        print(f"warning: run {name} has not learned (best val mAP50 {record.best_map50:.4f}): its detections "
              "are noise; train longer or on more labels", file=sys.stderr)


def _species_conf(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--species-conf takes NAME=CONF, not {item!r}")
        out[name] = float(value)
    return out


def cmd_counts(args) -> None:
    from bpr.results.counts import CountSource, frame_counts, video_summary, write_frame_csv, write_summary_csv

    if not args.run and not args.labels:
        raise ValueError("give --run RUN (count detections) or --labels (count labeled boxes)")
    with _open(args.project) as project:
        if args.labels:
            source = CountSource(label_statuses=("full",) if args.full_only else ("partial", "full"))
        else:
            source = CountSource.for_run(project, args.run, args.conf, _species_conf(args.species_conf))
        rows = video_summary(project, source, video=args.video)
        if args.csv:
            print(f"summary: {write_summary_csv(rows, args.csv)} ({len(rows)} rows)")
        if args.per_frame:
            table = frame_counts(project, source, video=args.video)
            print(f"per-frame: {write_frame_csv(table, args.per_frame)} ({len(table['rows'])} frames)")
    if not args.csv:
        print(f"{'video':22} {'species':28} {'MaxN':>5} {'frame':>7} {'time':>13} {'mean':>7} {'present':>8}"
              "  image")
        for r in rows:
            frame = "" if r["maxn_frame"] is None else r["maxn_frame"]
            print(f"{r['video']:22} {r['species']:28} {r['maxn']:5} {frame:>7} {r['maxn_timecode']:>13} "
                  f"{r['mean_count']:7.3f} {r['frames_present']:8}  {r['maxn_image'] or ''}".rstrip())


def _fractions(text: str) -> list[float]:
    return [_fraction(v) for v in text.split(",") if v.strip()]


def _pairs(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in text.split(","):
        if item.strip():
            obj, sep, box = item.partition(":")
            if not sep:
                raise argparse.ArgumentTypeError(f"{item!r}: write P_OBJ:P_BOX, e.g. 0.75:0.25")
            pairs.append((_fraction(obj), _fraction(box)))
    return pairs


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _method_pairs(text: str) -> list[tuple[str, float]]:
    pairs = []
    for item in _names(text):
        method, _, value = item.partition(":")
        pairs.append((method, _fraction(value)))
    return pairs


def cmd_experiment(args) -> None:
    from bpr.experiment import EXPERIMENT_TRAIN_OPTIONS, ExperimentSpec, run_experiment
    from bpr.learn.training import TrainingCancelled

    spec = ExperimentSpec(
        data=args.data, out=Path(args.out), hide=args.hide, keep_per_image=args.keep_per_image, p_obj=args.p_obj,
        p_box=args.p_box, both=args.both, pseudo=args.pseudo, combine=args.combine,
        pseudo_precision=args.pseudo_precision, pseudo_conf=args.pseudo_conf, ignore_conf=args.ignore_conf,
        burn_in=args.burn_in, tta=args.tta, oracle=args.oracle,
        upper_bound=not args.no_upper_bound, upper_bound_from=args.upper_bound_from, seeds=args.seeds,
        **{name: getattr(args, name) for name in EXPERIMENT_TRAIN_OPTIONS if name != "extra"},
        extra=dict(args.extra))
    runs = spec.runs(args.only)  # an unknown --only name is refused before anything is printed
    if args.only is None:
        names = [s.name for s in spec.settings()]
        print(f"{len(names)} settings x {spec.seeds} seed(s): {', '.join(names)}")
    else:
        print(f"{len(runs)} run(s): {', '.join(name for name, _, _ in runs)}")
    with _graceful_stop("stopping after this batch (Ctrl+C again to stop at once)") as stop:
        try:
            run_experiment(spec, only=args.only, cancel=stop.is_set)
        except TrainingCancelled as e:
            print(f"{e}; the same command continues the sweep")
            raise SystemExit(130) from None
    print((spec.out / "results.md").read_text())
    outputs = ("results.md", "results.csv", "mAP50_vs_drop.png", "val_curves.png")
    print("results: " + ", ".join(str(spec.out / name) for name in outputs))


def cmd_info(args) -> None:
    from bpr.data.store import counted, source_counts

    with _open(args.project) as project:
        project.check_files()
        summary = project.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"project: {summary['project']}")
    project_sources = source_counts(summary["videos"], summary["images"])
    print(", ".join(f"{noun}: {n}" for noun, n in project_sources)
          + f" ({summary['missing_videos']} missing, {summary['unreadable_videos']} unreadable)")
    on_labeled = sum(s["boxes"] for s in summary["splits"].values())
    print(f"boxes: {summary['boxes']}" + (f" ({on_labeled} on labeled frames; training and evaluation use only "
                                          "those, the rest are on frames marked neither partial nor full)"
                                          if on_labeled != summary["boxes"] else ""))
    pseudo = summary["pseudo_boxes"]
    if any(pseudo.values()) or summary["ignore_regions"]:
        print(f"pseudo-boxes (not labels): {pseudo['pending']} in use, {pseudo['accepted']} accepted into "
              f"labels, {pseudo['rejected']} rejected; {summary['ignore_regions']} ignore regions")
    print(f"labeled frames: {summary['frames']['partial']} partial, {summary['frames']['full']} full")
    for split, s in summary["splits"].items():
        sources = counted(source_counts(s["videos"], s["images"], empty=project_sources[0][0]))
        print(f"  {split:5}: {sources}, {s['frames']} labeled frames, {s['boxes']} boxes")
    print("species (boxes):")
    for name, n in summary["species"].items():
        print(f"  {name}: {n}")
    if summary["left_out"]:
        print(f"left out by imports ({len(summary['left_out'])} of {summary['imports']} left something out):")
        for entry in summary["left_out"]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["time"]))
            print(f"  {when} {entry['format']} {entry['source']}:")
            for line in entry["left_out"]:
                print(f"    {line}")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _train_arg(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. nbs=16")
    return key.strip(), yaml.safe_load(value)  # 16 -> int, 0.1 -> float, true -> bool, else str


def _add_options(p: argparse.ArgumentParser, cls, names: tuple[str, ...] | None = None,
                 defaults: dict | None = None) -> None:
    """The flags of a settings class's options (all, or ``names``), from their descriptions
    (bpr.config): the same defaults, ranges, choices and help as the app shows. ``defaults``
    replaces some defaults, for a command whose own are other (the experiment's)."""
    for o in options(cls):
        if names is None or o.name in names:
            p.add_argument(o.cli_flag, **_argument(o, (defaults or {}).get(o.name, o.default)))


def _argument(o: Option, default) -> dict:
    """add_argument's keywords for one option."""
    if o.kind is bool:  # a flag that sets the option to the other value than its default
        return dict(dest=o.name, action="store_false" if default else "store_true", help=o.flag_help or o.help)
    if o.cli_flag == "--train-arg":
        return dict(dest=o.name, type=_train_arg, action="append", default=[], metavar="KEY=VALUE",
                    help=f"{o.help} (repeatable)")
    kwargs = dict(dest=o.name, default=default)
    if o.choices is not None:
        kwargs["choices"] = o.choices
    if o.kind == list[str] | None:
        kwargs["nargs"] = "+"
    elif o.kind in (float, float | None) and (o.low, o.high) == (0.0, 1.0):
        kwargs["type"] = _fraction
    elif o.kind in (int, float):
        kwargs["type"] = o.kind
    shown = "" if default is None else f" (default: {default})"
    return dict(kwargs, help=o.help + shown)


def _settings(cls, args: argparse.Namespace):
    """``cls`` from the parsed flags of its options."""
    values = {o.name: getattr(args, o.name) for o in options(cls) if hasattr(args, o.name)}
    if isinstance(values.get("extra"), list):
        values["extra"] = dict(values["extra"])
    return from_flat(cls, values)


def _add_device_option(p: argparse.ArgumentParser) -> None:
    _add_options(p, TrainConfig, ("device",))


def _add_inference_size_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imgsz", type=int, help="inference size (default: the size the weights were trained at)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpr", description="Train detectors on partially labeled underwater video: Box Prediction "
        "Rebalancing, and pseudo-boxes mined by a teacher (self-training rounds, an EMA teacher).")
    parser.add_argument("--version", action="version", version=f"bpr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build the demo project (synthetic DUSIA-like videos, offline)")
    p.add_argument("path", help="folder to create the project in")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic videos")
    p.set_defaults(func=cmd_demo)

    from bpr.data.registry import FORMATS as FORMATS_BY_NAME
    from bpr.data.registry import exporters, importers

    p = sub.add_parser("import", help="import labels (and videos/images) into a project")
    fmt = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for f in importers():
        q = fmt.add_parser(f.name, help=f.title + (f": {f.source_help}" if f.source_help else ""))
        q.add_argument("source", metavar=f.source.upper() or "SOURCE", help=f.source_help)
        q.add_argument("--project", required=True, help="project folder (created if new)")
        q.add_argument("--strict", action="store_true",
                       help="refuse the source if anything of it would be left out (a box with no area or wholly "
                            "outside the frame, a crowd region, an empty file); by default those are left out, "
                            "counted and named")
        if f.import_options:
            _add_options(q, f.import_options)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("link-videos", help="find in folders the files of videos and images without one")
    p.add_argument("project", help="the project folder")
    p.add_argument("folders", nargs="+", metavar="folder", help="where to look, in this order")
    p.set_defaults(func=cmd_link_videos)

    def export_parser(parser, f):
        parser.add_argument("project", help="the project folder")
        parser.add_argument("out", help=("output folder (new, empty, or an earlier export to replace)"
                                         if f.name == "yolo" else "output folder" if f.export_to_folder
                                         else "output file"))
        _add_options(parser, f.export_options, f.export_option_names)
        parser.set_defaults(func=cmd_export, format=f.name)

    export_parser(sub.add_parser("export-yolo", help="write a YOLO training set (same as `export yolo`)"),
                  FORMATS_BY_NAME["yolo"])
    p = sub.add_parser("export", help="export labels, detections or a training set")
    fmt = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for f in exporters():
        export_parser(fmt.add_parser(f.name, help=f.export_help), f)

    p = sub.add_parser("evaluate", help="mAP of a run (or weights) on a split's fully labeled frames")
    p.add_argument("project", help="the project folder")
    p.add_argument("--run", help="a training run")
    p.add_argument("--weights", help="or a local .pt file")
    p.add_argument("--split", choices=["train", "val", "test"], default="test",
                   help="score on this split's fully labeled frames (default: test)")
    p.add_argument("--conf", type=_fraction, default=0.25, help="confidence for precision/recall")
    _add_inference_size_option(p)
    _add_device_option(p)
    p.add_argument("--pr-curve", help="write the precision-recall curves to this PNG")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("detect", help="run a detector over videos; stores detections (resumable)")
    p.add_argument("project", help="the project folder")
    p.add_argument("--run", help="a training run")
    p.add_argument("--weights", help="or a local .pt file")
    p.add_argument("--video", nargs="+", help="only these videos (default: every readable one)")
    p.add_argument("--stride", type=int, default=1, help="every K-th frame (default 1)")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--stop", type=int, help="stop before this frame")
    p.add_argument("--batch", type=int, default=8, help="frames per inference batch (default 8)")
    p.add_argument("--min-conf", type=_fraction, default=KEEP_CONF,
                   help="store detections at or above this (default %(default)s; counts and review filter later)")
    _add_inference_size_option(p)
    _add_device_option(p)
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="detect in shards on a Ray cluster (pip install \"bpr-detect[cluster]\"): at ADDRESS "
                        "(e.g. ray://head:10001, or auto), or without one on a Ray started on this machine; this "
                        "process stores the detections")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("counts", help="species counts (MaxN, mean count, frames present) as CSV")
    p.add_argument("project", help="the project folder")
    p.add_argument("--run", help="count this run's detections")
    p.add_argument("--labels", action="store_true", help="count the labeled boxes instead")
    p.add_argument("--full-only", action="store_true", help="with --labels: only fully labeled frames")
    from bpr.results.counts import CountSource  # the store, and sqlite_utils: not for every command

    _add_options(p, CountSource, ("conf",), {"conf": None})
    p.add_argument("--species-conf", nargs="+", metavar="NAME=CONF", help="per-species thresholds")
    p.add_argument("--video", help="only this video, or this folder of images (its name, or one image's id)")
    p.add_argument("--csv", help="write the per-video summary here (else print it)")
    p.add_argument("--per-frame", help="write the per-frame counts here")
    p.set_defaults(func=cmd_counts)

    p = sub.add_parser("train", help="train a detector on partial labels (Box Prediction Rebalancing, "
                                     "an EMA teacher)")
    p.add_argument("project", help="the project folder")
    _add_options(p, TrainConfig)
    p.add_argument("--name", help="run name (default: run1, run2, ...)")
    p.add_argument("--resume", metavar="RUN", help="resume a cancelled or failed run from its last epoch, with "
                   "the settings it started with, on the device it trained on unless --device names another "
                   "(a run carried between machines)")
    p.add_argument("--verbose", action="store_true", help="show ultralytics' own output")
    p.set_defaults(func=cmd_train)

    from bpr.config import SelfTraining

    p = sub.add_parser("selftrain", help="self-training rounds: each round's teacher gives the next its "
                                         "pseudo-boxes (resumable)")
    p.add_argument("project", help="the project folder")
    p.add_argument("--name", required=True, help="the rounds are the runs NAME-r0, NAME-r1, ...")
    p.add_argument("--from-run", metavar="RUN", help="a finished run to use as round 0 instead of training one")
    _add_options(p, SelfTraining)
    _add_options(p, TrainConfig)
    p.add_argument("--verbose", action="store_true", help="show ultralytics' own output")
    p.set_defaults(func=cmd_selftrain)

    p = sub.add_parser("experiment", help="the experiment: the baseline against the BPR and pseudo-label "
                                          "settings, over seeds")
    p.add_argument("data", help="a project folder or a YOLO data.yaml")
    p.add_argument("--out", required=True, help="results folder (rerun to resume: a run stopped in training goes on "
                                                "from its last epoch, kept in OUT/unfinished/)")
    p.add_argument("--hide", type=_fraction, help="fraction of training boxes hidden (default 0.5; 0 with "
                   "--keep-per-image)")
    _add_options(p, TrainConfig, ("keep_per_image",))
    p.add_argument("--p-obj", type=_fractions, default=[0.1, 0.25, 0.5, 0.75], metavar="LIST",
                   help="objectness drops, comma-separated (default 0.1,0.25,0.5,0.75)")
    p.add_argument("--p-box", type=_fractions, default=[0.25], metavar="LIST",
                   help="box drops, comma-separated (default 0.25)")
    p.add_argument("--both", type=_pairs, default=[(0.75, 0.25)], metavar="PAIRS",
                   help="both at once, P_OBJ:P_BOX pairs (default 0.75:0.25)")
    from bpr.experiment import PSEUDO_SETTINGS

    p.add_argument("--pseudo", type=_names, default=list(PSEUDO_SETTINGS), metavar="LIST",
                   help=f"pseudo-label settings, comma-separated (default {','.join(PSEUDO_SETTINGS)}; "
                        "none: --pseudo '')")
    p.add_argument("--combine", type=_method_pairs, default=[("selftrain1", 0.25)], metavar="PAIRS",
                   help="pseudo-label settings with BPR's objectness drop, METHOD:P_OBJ pairs (default "
                        "selftrain1:0.25)")
    from bpr.config import PseudoLabels, SelfTraining

    _add_options(p, PseudoLabels, ("pseudo_precision", "pseudo_conf", "ignore_conf", "burn_in"), {"burn_in": None})
    burn_in = next(a for a in p._actions if a.dest == "burn_in")
    burn_in.help += " (default: half the epochs)"  # ExperimentSpec.burn_in None
    _add_options(p, SelfTraining, ("tta",))
    p.add_argument("--oracle", action="store_true",
                   help="also train hidden-ignored: the hidden boxes as ignore regions, the ignore band of a "
                        "teacher that found every hidden animal (a diagnostic: the most an ignore band can win)")
    p.add_argument("--no-upper-bound", action="store_true", help="skip the run with all labels")
    p.add_argument("--upper-bound-from", type=Path, metavar="DIR",
                   help="take the runs with all labels from this earlier sweep, instead of training them: "
                        "they hide nothing, so a sweep at another --hide or --keep-per-image shares them")
    p.add_argument("--only", type=_names,
                   metavar="NAMES", help="train only these settings (names as in the table, e.g. "
                   "baseline,obj0.75) or runs (e.g. box0.25-seed1), to split one sweep between processes "
                   "sharing --out")
    p.add_argument("--seeds", type=int, default=3, help="train every setting with seeds 0 to SEEDS-1 (default 3)")
    from bpr.experiment import EXPERIMENT_DEFAULTS, EXPERIMENT_TRAIN_OPTIONS

    _add_options(p, TrainConfig, EXPERIMENT_TRAIN_OPTIONS, EXPERIMENT_DEFAULTS)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("runs", help="list training runs and their results")
    p.add_argument("project", help="the project folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("info", help="what a project holds")
    p.add_argument("project", help="the project folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_info)
    return parser


# Errors a user can act on: print the message, no traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from bpr.data.dataset import ExportError
    from bpr.data.formats import LabelFormatError
    from bpr.data.media import VideoError
    from bpr.data.store import ProjectError

    return (LabelFormatError, ProjectError, ExportError, VideoError, FileNotFoundError,
            FileExistsError, ValueError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable = args.func
    try:
        func(args)
    except _user_errors() as e:
        print(f"bpr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bpr {args.command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`bpr runs P | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
