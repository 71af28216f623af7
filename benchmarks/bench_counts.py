"""Benchmark: per-video species summary (MaxN, mean count, frames present) over 1,000,000 stored detections.

Target: under 2 s. The project is synthetic but DUSIA-shaped: 10 videos of 54,000 frames at 30 fps,
every 5th frame processed, ~9 detections per processed frame over 10 species, confidences uniform.
Run: python benchmarks/bench_counts.py [--detections N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from synthetic_detections import add_synthetic_run

    from bpr.results.counts import CountSource, frame_counts, video_summary
    from bpr.data.store import Project

    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(Path(tmp) / "p")
        frames, _ = add_synthetic_run(project, [f"{i:020d}" for i in range(10)], args.detections)
        times, per_frame = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            rows = video_summary(project, CountSource(run="bench", conf=0.25))
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            table = frame_counts(project, CountSource(run="bench", conf=0.25))
            per_frame.append(time.perf_counter() - start)
        project.close()
    print(f"command: python benchmarks/bench_counts.py --detections {args.detections} --repeat {args.repeat}")
    print(f"{args.detections} detections, {len(frames)} processed frames, 10 videos, 10 species")
    print(f"  per-video summary ({len(rows)} rows): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s (target < 2 s)")
    print(f"  per-frame table ({len(table['rows'])} rows): median {statistics.median(per_frame):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
