"""Benchmark: detection throughput of ``bpr detect`` against ``yolo predict`` on the same video, model and
image size, measured side by side (target: at least the frames per second of ``yolo predict``).

``bpr detect`` reads frames forward, predicts in batches and stores every detection in the project;
``yolo predict`` here is ultralytics' own streaming predictor over the same file, storing nothing.
The model is yolov5n (untrained weights: the speed is the same) at the given size.
Run: python benchmarks/bench_detect.py [--video PATH] [--imgsz 640] [--device cpu] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "crab_test.mp4"


def untrained_weights(folder: Path) -> Path:
    """yolov5n's untrained weights, saved in ``folder``: the speed of a trained model, with nothing to train."""
    from bpr.offline import configure

    configure()
    from ultralytics import YOLO

    weights = folder / "bench-model.pt"
    YOLO("yolov5n.yaml").save(str(weights))
    return weights


def clip_project(folder: Path, video: Path, info: dict, copies: int = 1):
    """A new project (open) whose videos are ``video``, ``copies`` times (ids clip0, clip1, ...)."""
    from bpr.data.store import Project

    project = Project.create(folder)
    for copy in range(copies):
        project.conn.execute("INSERT INTO videos (id) VALUES (?)", (f"clip{copy}",))
        project.set_video_file(f"clip{copy}", video, info, "ok")
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not args.video.exists():
        print(f"skipped: {args.video} not found (needs the ../shared checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from bpr.results.detect import detect, load_model
    from bpr.data.media import probe
    from bpr.learn.training import resolve_device

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = untrained_weights(Path(tmp))
        ours, theirs = [], []
        for r in range(args.rounds):
            with clip_project(Path(tmp) / f"p{r}", args.video, probe(args.video)) as project:
                summary = detect(project, weights=weights, batch=args.batch, min_conf=0.05, imgsz=args.imgsz,
                                 device=args.device)
                ours.append(summary.fps)
            model, _ = load_model(weights, args.device)
            start, frames = time.perf_counter(), 0
            for _ in model.predict(str(args.video), stream=True, imgsz=args.imgsz, conf=0.05, device=device,
                                   verbose=False):
                frames += 1
            theirs.append(frames / (time.perf_counter() - start))
    info = probe(args.video)
    print(f"command: python benchmarks/bench_detect.py --video {args.video} --imgsz {args.imgsz} "
          f"--device {args.device} --batch {args.batch} --rounds {args.rounds}")
    import torch

    threads = f", {torch.get_num_threads()} torch threads for both" if device == "cpu" else ""
    print(f"video: {args.video.name}, {info['width']}x{info['height']}, {info['frame_count']} frames; "
          f"yolov5n at {args.imgsz} px on {args.device}{threads}")
    for name, fps in ((f"bpr detect (batch {args.batch}, stored):", ours), ("yolo predict (stream):", theirs)):
        print(f"  {name:32} median {statistics.median(fps):.1f} frames/s  {[round(v, 1) for v in fps]}")
    print(f"  ratio: {statistics.median(ours) / statistics.median(theirs):.2f}x (target >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
