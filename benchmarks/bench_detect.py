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
    from bpr.offline import configure
    from bpr.data.store import Project
    from bpr.learn.training import resolve_device

    configure()
    from ultralytics import YOLO

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "bench-model.pt"
        YOLO("yolov5n.yaml").save(str(weights))
        ours, theirs = [], []
        for r in range(args.rounds):
            folder = Path(tmp) / f"p{r}"
            with Project.create(folder) as project:
                project.conn.execute("INSERT INTO videos (id) VALUES ('clip')")
                project.set_video_file("clip", args.video, probe(args.video), "ok")
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
