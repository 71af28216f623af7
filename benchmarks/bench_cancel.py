"""Benchmark: how long Stop takes, from the press to the call returning, in training and in detection.

Target: under 2 s each. Training is asked to stop during its second batch and stops at the end of the
batch in flight; detection is asked 0.2 s after its first batch, while the next is being read and
predicted, and stops before the one after. The project is the bundled demo (synthetic DUSIA-style
videos); the models are yolov5n, untrained (the time to stop is the same).
Run: python benchmarks/bench_cancel.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stop_training(project, name: str) -> float:
    from bpr.config import Rebalancing
    from bpr.learn.training import TrainConfig, TrainingCancelled, train

    stop, asked = threading.Event(), []

    def on_event(event):
        if event.kind == "batch" and event.batch == 2 and not asked:
            asked.append(time.perf_counter())
            stop.set()

    config = TrainConfig(model="yolov5n.yaml", epochs=3, imgsz=320, batch=4, workers=0, device="cpu",
                         rebalancing=Rebalancing(p_obj=0.5, p_box=0.25))
    try:
        train(project, config, name=name, on_event=on_event, cancel=stop.is_set)
    except TrainingCancelled:
        return time.perf_counter() - asked[0]
    raise RuntimeError("training finished before it was stopped")


def stop_detection(project, weights: Path) -> float:
    from bpr.results.detect import detect

    cancel, pressed, timer = threading.Event(), [], []

    def press():
        pressed.append(time.perf_counter())
        cancel.set()

    def on_progress(done, total, message):
        if done and not timer:  # the first batch is stored: press while the next one is in flight
            timer.append(threading.Timer(0.2, press))
            timer[0].start()

    summary = detect(project, weights=weights, imgsz=640, batch=8, progress=on_progress, cancel=cancel.is_set)
    if not (summary.cancelled and pressed):
        raise RuntimeError("detection finished before it was stopped")
    return time.perf_counter() - pressed[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bpr.demo import build_demo
    from bpr.offline import configure
    from bpr.data.store import Project

    configure()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        build_demo(Path(tmp) / "demo")
        training, detection = [], []
        with Project.open(Path(tmp) / "demo") as project:
            for r in range(args.rounds):
                training.append(stop_training(project, f"stop{r}"))
                weights = Path(tmp) / f"model{r}.pt"  # a run of its own: detection starts afresh
                YOLO("yolov5n.yaml").save(str(weights))
                detection.append(stop_detection(project, weights))
    print(f"command: python benchmarks/bench_cancel.py --rounds {args.rounds}")
    for what, times in (("training", training), ("detection", detection)):
        print(f"  {what}: stop took median {statistics.median(times):.2f} s, max {max(times):.2f} s "
              f"over {len(times)} rounds (target < 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
