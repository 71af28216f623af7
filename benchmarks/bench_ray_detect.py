"""Benchmark: ``bpr detect --ray`` on a local Ray against plain ``bpr detect``, side by side on the
same clip, model and image size, on the same cores (target: at least 0.9x plain per core).

Plain detection uses every core in one process (torch's threads); on Ray, workers of up to
bpr.results.cluster.WORKER_THREADS threads each take shards of the frames, and the driver stores what
they find. Both store every detection. The model is yolov5n (untrained weights: the speed is the
same). With ``--gpu-fps F`` (the frames/s one GPU reached), it also prints what N GPUs would give,
assuming shards scale as they do here.
Run: python benchmarks/bench_ray_detect.py [--video PATH] [--imgsz 320] [--cores 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "crab_test.mp4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="the CPUs Ray is given")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=6, help="the clip as this many videos: an archive, in small")
    parser.add_argument("--gpu-fps", type=float, help="frames/s of plain detect on one GPU, for the N-GPU estimate")
    args = parser.parse_args()
    if not args.video.exists():
        print(f"skipped: {args.video} not found (needs the ../shared checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    import ray
    from bench_detect import clip_project, untrained_weights

    from bpr.data.media import probe
    from bpr.results.detect import detect

    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    info = probe(args.video)
    with tempfile.TemporaryDirectory() as tmp:
        weights = untrained_weights(Path(tmp))
        plain, on_ray = [], []
        for r in range(args.rounds):  # interleaved, so that both see the same machine
            for name, fps, cluster in (("plain", plain, None), ("ray", on_ray, "local")):
                with clip_project(Path(tmp) / f"{name}{r}", args.video, info, args.copies) as project:
                    summary = detect(project, weights=weights, batch=args.batch, min_conf=0.05, imgsz=args.imgsz,
                                     device="cpu", ray=cluster)
                    fps.append(summary.fps)
    ray.shutdown()
    import torch

    print(f"command: python benchmarks/bench_ray_detect.py --video {args.video} --imgsz {args.imgsz} "
          f"--cores {args.cores} --batch {args.batch} --rounds {args.rounds} --copies {args.copies}")
    print(f"video: {args.video.name} as {args.copies} videos, {info['width']}x{info['height']}, {info['frame_count']} "
          f"frames each; yolov5n at "
          f"{args.imgsz} px on the CPU, {os.cpu_count()} cores")
    print(f"  plain bpr detect ({torch.get_num_threads()} torch threads): median {statistics.median(plain):.1f} "
          f"frames/s  {[round(v, 1) for v in plain]}")
    from bpr.results.cluster import WORKER_THREADS

    threads = min(WORKER_THREADS, args.cores)
    print(f"  bpr detect --ray ({args.cores // threads} local worker(s) of {threads} threads): "
          f"median {statistics.median(on_ray):.1f} frames/s  "
          f"{[round(v, 1) for v in on_ray]}")
    ratio = statistics.median(on_ray) / statistics.median(plain)
    print(f"  ratio per core (both on {args.cores} cores): {ratio:.2f}x (target >= 0.9)")
    if args.gpu_fps:
        for n in (2, 4, 8):
            print(f"  estimate, {n} GPUs: {n * args.gpu_fps * min(ratio, 1.0):.0f} frames/s (one GPU's "
                  f"{args.gpu_fps:g} x {n} x the ratio measured here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
