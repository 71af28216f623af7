"""Benchmark: frame access on the real 1080p clip, against plain cv2.VideoCapture.read() in the same run.

Targets: forward step within 1.2x of plain sequential decode, cached read under 2 ms, random seek under
80 ms median. Run: python benchmarks/bench_frames.py [--video PATH] [--seeks N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "crab_test.mp4"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--seeks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds of plain vs ours")
    args = parser.parse_args()
    if not args.video.exists():
        print(f"skipped: {args.video} not found (needs the ../shared checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    import cv2

    from bpr.data.media import VideoReader

    plain, forward = [], []
    for _ in range(args.rounds):  # interleaved, so both see the same machine load
        cap = cv2.VideoCapture(str(args.video))
        n, start = 0, time.perf_counter()
        while cap.read()[0]:
            n += 1
        plain.append((time.perf_counter() - start) / n)
        cap.release()
        with VideoReader(args.video, cache_mb=256) as reader:
            start = time.perf_counter()
            for i in range(reader.frame_count):
                reader.read(i)
            forward.append((time.perf_counter() - start) / reader.frame_count)

    with VideoReader(args.video, cache_mb=0) as reader:
        rng = random.Random(0)
        targets = [rng.randrange(reader.frame_count) for _ in range(args.seeks)]
        reader.read(targets[0])  # builds the timestamp table once, as any first seek does
        seeks = []
        for index in targets:
            start = time.perf_counter()
            reader.read(index)
            seeks.append(time.perf_counter() - start)
        frame_count, size = reader.frame_count, (reader.width, reader.height, reader.codec)

    with VideoReader(args.video, cache_mb=512) as reader:
        for i in range(60):
            reader.read(i)
        cached = []
        for _ in range(5):
            for i in range(60):
                start = time.perf_counter()
                reader.read(i)
                cached.append(time.perf_counter() - start)

    p, f = statistics.median(plain), statistics.median(forward)
    ratio = statistics.median(b / a for a, b in zip(plain, forward))  # per round: same machine load
    print(f"command: python benchmarks/bench_frames.py --video {args.video} --seeks {args.seeks} "
          f"--rounds {args.rounds}")
    print(f"video: {args.video.name}, {size[0]}x{size[1]} {size[2]}, {frame_count} frames")
    print(f"plain cv2 read() sequential: {ms(p)} per frame")
    print(f"forward step (VideoReader.read(i), i+1...): {ms(f)} per frame; "
          f"median of per-round ratios {ratio:.2f}x plain (target <= 1.2x)")
    print(f"random seek: median {ms(statistics.median(seeks))}, 90th pct "
          f"{ms(sorted(seeks)[int(0.9 * len(seeks))])} over {len(seeks)} (target median < 80 ms)")
    print(f"cached read: median {ms(statistics.median(cached))}, max {ms(max(cached))} (target < 2 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
