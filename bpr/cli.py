"""The ``bpr`` command: build the demo, import labels, link videos, export training sets, show a project."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from bpr import __version__


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


def _open(path: str):
    from bpr.store import Project

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
    from bpr.formats import read_coco, read_cvat, read_dusia, read_yolo, write_batch
    from bpr.store import Project

    bar = _Bar()
    try:
        # Read and check everything first: a bad file must not even create the project folder.
        if args.format == "dusia":
            batch = read_dusia(args.root, args.videos, progress=bar)
        elif args.format == "cvat":
            batch = read_cvat(args.xml, args.video_id, Path(args.video) if args.video else None,
                              args.split, args.status)
        elif args.format == "yolo":
            batch = read_yolo(args.data_yaml, args.train_status, progress=bar)
        else:
            batch = read_coco(args.json, args.images, args.split, args.status)
        with Project.open(args.project, create=True) as project:
            report = write_batch(project, batch, progress=bar)
    finally:
        bar.close()
    _report(report)


def cmd_link_videos(args) -> None:
    from bpr.formats import link_videos

    with _open(args.project) as project:
        result = link_videos(project, args.folder)
    print(f"linked {len(result['linked'])} video(s); {len(result['still_missing'])} still missing")
    for line in result["unreadable"]:
        print(f"unreadable: {line}")
    for line in result["frame_count_mismatch"]:
        print(f"warning: {line}")


def cmd_export_yolo(args) -> None:
    from bpr.dataset import export_yolo

    bar = _Bar("frame")
    with _open(args.project) as project:
        try:
            result = export_yolo(project, args.out, species=args.species, hide_fraction=args.hide_fraction,
                                 seed=args.seed, progress=bar)
        finally:
            bar.close()
    for warning in result.warnings:
        print(f"warning: {warning}")
    for split, n in result.images.items():
        print(f"{split}: {n} images, {result.boxes[split]} boxes")
    if result.hidden_boxes:
        print(f"hidden from train: {result.hidden_boxes} boxes (seed {args.seed})")
    print(f"data.yaml: {result.data_yaml}")


def cmd_train(args) -> None:
    import os
    import signal
    import threading

    if not args.verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # our progress bar replaces ultralytics' output
    from tqdm import tqdm

    from bpr.loss import Rebalancing
    from bpr.training import TrainConfig, TrainingCancelled, train

    config = None
    if args.resume is None:
        config = TrainConfig(
            model=args.model, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
            seed=args.seed, workers=args.workers, species=args.species, hide_fraction=args.hide_fraction,
            rebalancing=Rebalancing(p_obj=args.p_obj, p_box=args.p_box, neg_iou=args.neg_iou,
                                    mode=args.mode, partial_only=not args.all_frames, seed=args.seed))
    stop = threading.Event()

    def on_interrupt(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this batch (Ctrl+C again to stop at once)", file=sys.stderr)

    bar = None

    def on_event(event) -> None:
        nonlocal bar
        if event.kind == "start":
            print(event.message)
            total = event.epochs * event.batches
            bar = tqdm(total=total, initial=(event.epoch - 1) * event.batches, unit="batch",
                       file=sys.stderr, dynamic_ncols=True)
        elif event.kind == "batch" and bar is not None:
            bar.update(1)
            fraction = event.drop.get("obj_drop_fraction")
            bar.set_description(f"epoch {event.epoch}/{event.epochs}")
            bar.set_postfix({k.removesuffix("_loss"): f"{v:.3g}" for k, v in event.losses.items()}
                            | ({"obj drop": f"{fraction:.2f}"} if fraction is not None else {}))
        elif event.kind == "epoch":
            line = f"epoch {event.epoch}/{event.epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in event.metrics.items())
            (bar.write if bar is not None else print)(line)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    with _open(args.project) as project:
        try:
            run = train(project, config, name=args.name, resume=args.resume, on_event=on_event, stop=stop)
        except TrainingCancelled as e:
            if bar is not None:
                bar.close()
            print(f"{e}; resume with: bpr train {args.project} --resume {project.runs()[-1]['name']}")
            raise SystemExit(130) from None
        finally:
            signal.signal(signal.SIGINT, previous)
            if bar is not None:
                bar.close()
        _print_run(run)


def _print_run(run: dict) -> None:
    config, metrics = run["config"], run["metrics"]
    rb = config["rebalancing"]
    print(f"run {run['name']}: {run['status']}, {len(metrics)}/{config['epochs']} epochs, "
          f"{config['model']} at {config['imgsz']} px")
    print(f"  rebalancing: p_obj {rb['p_obj']}, p_box {rb['p_box']}, mode {rb['mode']}, "
          f"neg_iou {rb['neg_iou']}, {'partial frames only' if rb['partial_only'] else 'all frames'}")
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
    if run.get("summary"):
        best = run["summary"]["best"]
        print(f"  best weights: val mAP50 {best.get('mAP50', float('nan')):.4f}, "
              f"mAP50-95 {best.get('mAP50-95', float('nan')):.4f}")
    if run["weights"]:
        print(f"  weights: {run['weights']}")
    if run["error"]:
        print(f"  error: {run['error'].splitlines()[0]}")


def cmd_runs(args) -> None:
    with _open(args.project) as project:
        runs = project.runs()
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    if not runs:
        print("no runs yet: start one with `bpr train`")
    for run in runs:
        config, metrics = run["config"], run["metrics"]
        rb = config["rebalancing"]
        best = max((m.get("mAP50", 0.0) for m in metrics), default=None)
        print(f"{run['name']:12} {run['status']:10} {config['model']:14} "
              f"{len(metrics):>3}/{config['epochs']:<3} ep  p_obj {rb['p_obj']:<5} p_box {rb['p_box']:<5} "
              f"{rb['mode']:9} best val mAP50 {'-' if best is None else f'{best:.4f}'}")


def cmd_info(args) -> None:
    with _open(args.project) as project:
        summary = project.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"project: {summary['project']}")
    print(f"videos: {summary['videos']} ({summary['missing_videos']} missing, "
          f"{summary['unreadable_videos']} unreadable)")
    print(f"boxes: {summary['boxes']}")
    print(f"labeled frames: {summary['frames']['partial']} partial, {summary['frames']['full']} full")
    for split, s in summary["splits"].items():
        print(f"  {split:5}: {s['videos']} videos, {s['frames']} labeled frames, {s['boxes']} boxes")
    print("species (boxes):")
    for name, n in summary["species"].items():
        print(f"  {name}: {n}")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpr", description="Train detectors on partially labeled underwater video "
        "(Box Prediction Rebalancing).")
    parser.add_argument("--version", action="version", version=f"bpr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build the demo project (synthetic DUSIA-like videos, offline)")
    p.add_argument("path", help="folder to create the project in")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic videos")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import labels (and videos/images) into a project")
    fmt = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    q = fmt.add_parser("dusia", help="a DUSIA folder: cvat_annos/*.xml and idd_lsts/*.txt")
    q.add_argument("root", help="the folder holding cvat_annos/ and idd_lsts/ (or data/ with them)")
    q.add_argument("--project", required=True, help="project folder (created if new)")
    q.add_argument("--videos", help="folder with the <video id>.mp4 files, if you have them")
    q = fmt.add_parser("cvat", help="one CVAT for video 1.1 XML file")
    q.add_argument("xml")
    q.add_argument("--project", required=True, help="project folder (created if new)")
    q.add_argument("--video", help="the video file the annotations belong to")
    q.add_argument("--video-id", help="id for the video (default: the task name)")
    q.add_argument("--split", choices=["train", "val", "test", "none"])
    q.add_argument("--status", choices=["partial", "full", "none"], default="partial",
                   help="label status for frames holding a keyframe box (default: partial)")
    q = fmt.add_parser("yolo", help="a YOLO dataset described by a data.yaml")
    q.add_argument("data_yaml")
    q.add_argument("--project", required=True, help="project folder (created if new)")
    q.add_argument("--train-status", choices=["partial", "full"], default="partial",
                   help="label status of training images (val/test are full); default partial")
    q = fmt.add_parser("coco", help="a COCO detection JSON file")
    q.add_argument("json")
    q.add_argument("--images", help="folder the file names are relative to (default: the JSON's)")
    q.add_argument("--project", required=True, help="project folder (created if new)")
    q.add_argument("--split", choices=["train", "val", "test", "none"])
    q.add_argument("--status", choices=["partial", "full"],
                   help="label status of the images (default: partial for train, else full)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("link-videos", help="find missing videos' files in a folder and link them")
    p.add_argument("project")
    p.add_argument("folder")
    p.set_defaults(func=cmd_link_videos)

    p = sub.add_parser("export-yolo", help="write a YOLO training set (images, labels, data.yaml)")
    p.add_argument("project")
    p.add_argument("out", help="output folder (new, empty, or an earlier export to replace)")
    p.add_argument("--species", nargs="+", help="species to train on (default: all marked for training)")
    p.add_argument("--hide-fraction", type=_fraction, default=0.0,
                   help="hide this fraction of training boxes (a controlled partial-label benchmark)")
    p.add_argument("--seed", type=int, default=0, help="seed for choosing the hidden boxes")
    p.set_defaults(func=cmd_export_yolo)

    p = sub.add_parser("train", help="train a detector with Box Prediction Rebalancing")
    p.add_argument("project")
    p.add_argument("--model", default="yolov5n.yaml",
                   help="ultralytics model YAML (trained from scratch) or a local .pt (default: yolov5n.yaml)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=640, help="training image size in pixels")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--p-obj", type=_fraction, default=0.0,
                   help="fraction of negatives dropped from the objectness/classification loss")
    p.add_argument("--p-box", type=_fraction, default=0.0,
                   help="fraction of low-IoU predictions dropped from the box loss")
    p.add_argument("--mode", choices=["random", "confident"], default="random",
                   help="drop at random (the paper) or the most confident negatives first")
    p.add_argument("--neg-iou", type=_fraction, default=0.3,
                   help="IoU below which a prediction is a negative (default 0.3)")
    p.add_argument("--all-frames", action="store_true",
                   help="drop in fully labeled training frames too (default: partial frames only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--species", nargs="+", help="species to train on (default: all marked for training)")
    p.add_argument("--hide-fraction", type=_fraction, default=0.0,
                   help="hide this fraction of training boxes (partial-label benchmarks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes")
    p.add_argument("--name", help="run name (default: run1, run2, ...)")
    p.add_argument("--resume", metavar="RUN", help="resume a cancelled or failed run from its last epoch")
    p.add_argument("--verbose", action="store_true", help="show ultralytics' own output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list training runs and their results")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("info", help="what a project holds")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_info)
    return parser


# Errors a user can act on: print the message, no traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from bpr.dataset import ExportError
    from bpr.formats import LabelFormatError
    from bpr.media import VideoError
    from bpr.store import ProjectError

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
