"""CPU training speed: ultralytics' thread count (cores - 1) against bpr's (at least two).

Trains yolov5n from scratch on the brittlestar ROV frames (50 % of training boxes hidden) for a few
epochs, as `bpr experiment` trains on the CPU (RAM cache, nbs 16), once with each thread count, each
in its own process (the thread count is process-wide), one after the other. Prints the seconds of
each epoch, validation included. On a machine with more than 2 cores both legs use the same count.

Run: python benchmarks/bench_cpu_threads.py [--epochs N] [--imgsz S] [--workers W] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "brittlestar" / "data.yaml"
LEGS = ("ultralytics", "bpr")


def leg(args) -> dict:
    """One training run in this process; its thread count and the seconds of each epoch."""
    sys.path.insert(0, str(ROOT))
    import torch

    import bpr.learn.training
    from bpr.learn.loss import Rebalancing
    from bpr.data.store import Project

    if args.leg == "ultralytics":
        bpr.learn.training._take_two_cores = lambda: None  # leave ultralytics' own choice
    config = bpr.learn.training.TrainConfig(model="yolov5n.yaml", epochs=args.epochs, imgsz=args.imgsz, batch=16,
                                      device="cpu", workers=args.workers, hide_fraction=0.5, seed=0,
                                      rebalancing=Rebalancing(), extra={"cache": "ram", "nbs": 16})
    marks, threads = [], set()

    def on_event(event):
        if event.kind in ("start", "epoch"):
            marks.append(time.perf_counter())
        if event.kind == "batch":
            threads.add(torch.get_num_threads())

    with Project.open(args.out) as project:
        name = f"{args.leg}-{len(project.runs()) + 1}"
        bpr.learn.training.train(project, config, name=name, on_event=on_event)
    return {"leg": args.leg, "threads": sorted(threads), "epoch_s": [round(b - a, 1) for a, b in zip(marks, marks[1:])]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-cpu-threads"), help="project folder")
    parser.add_argument("--leg", choices=LEGS, help=argparse.SUPPRESS)  # one leg, run by the parent
    args = parser.parse_args()
    if args.leg:
        print(json.dumps(leg(args)))
        return 0
    if not DATA.exists():
        print(f"skipped: {DATA} not found (needs the ../shared checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from bpr.data.formats import import_yolo
    from bpr.data.store import Project

    with Project.open(args.out, create=True) as project:
        if not project.videos():
            import_yolo(project, DATA)
    command = (f"python benchmarks/bench_cpu_threads.py --epochs {args.epochs} --imgsz {args.imgsz} "
               f"--workers {args.workers} --out {args.out}")
    print(f"command: {command}\n{os.cpu_count()} cores")
    rows = []
    for name in LEGS:
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--leg", name],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return child.returncode
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"\nyolov5n from scratch, {args.imgsz} px, batch 16, {args.workers} data-loader worker(s), RAM cache")
    print("| threads chosen by | threads | seconds per epoch, validation included | median |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['leg']} | {', '.join(map(str, row['threads']))} | "
              f"{', '.join(f'{s:.1f}' for s in row['epoch_s'])} | {statistics.median(row['epoch_s']):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
