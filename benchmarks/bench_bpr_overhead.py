"""Benchmark: cost of BPR per training step against ultralytics' plain loss (target: <= 3 % time, <= 5 % memory).

A training step is forward + loss + backward of yolov5n on a batch of 8 images at 640 px with 15 boxes
per image (DUSIA-like density). Plain and BPR (p_obj 0.75, p_box 0.25) steps are interleaved in one
process so both see the same machine load. Peak memory: on CUDA, torch's peak allocation per
configuration; on the CPU, the peak RSS of a separate child process per configuration.

Run: python benchmarks/bench_bpr_overhead.py [--device cpu|cuda] [--rounds N] [--steps K]
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
sys.path.insert(0, str(ROOT))


def model_and_batch(device: str, imgsz: int, batch: int, boxes: int):
    """A yolov5n in training mode (10 classes) and a batch of random images with ``boxes`` each."""
    import torch

    from bpr.offline import configure

    configure()
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov5n.yaml", nc=10, verbose=False).to(device)
    model.args = get_cfg()
    model.train()
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(batch * boxes, 2, generator=g) * 0.8 + 0.1
    sizes = torch.rand(batch * boxes, 2, generator=g) * 0.08 + 0.02
    data = {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(boxes).float(),
        "cls": torch.randint(0, 10, (batch * boxes, 1), generator=g).float(),
        "bboxes": torch.cat([centres, sizes], 1),
    }
    return model, data


def setup(device: str, imgsz: int, batch: int, boxes: int):
    from bpr.learn.loss import Rebalancing, build_criterion

    model, data = model_and_batch(device, imgsz, batch, boxes)
    criteria = {
        "plain": model.init_criterion(),
        "bpr": build_criterion(model, Rebalancing(p_obj=0.75, p_box=0.25)),
    }
    return model, data, criteria


def step(model, criterion, data, device):
    import torch

    model.zero_grad(set_to_none=True)
    loss, _ = criterion(model(data["img"]), data)
    loss.sum().backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def memory_child(args) -> None:
    """Run only one configuration and print its peak resident memory (CPU) as JSON."""
    import resource

    model, data, criteria = setup("cpu", args.imgsz, args.batch, args.boxes)
    for _ in range(args.steps):
        step(model, criteria[args.memory_child], data, "cpu")
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2, help="steps per configuration per round")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=15, help="boxes per image")
    parser.add_argument("--memory-child", choices=["plain", "bpr"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return 0

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model, data, criteria = setup(args.device, args.imgsz, args.batch, args.boxes)
    for name in criteria:  # warm-up
        step(model, criteria[name], data, args.device)
    times: dict[str, list[float]] = {"plain": [], "bpr": []}
    ratios = []
    for r in range(args.rounds):
        order = ["plain", "bpr"] if r % 2 == 0 else ["bpr", "plain"]
        this_round = {}
        for name in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, criteria[name], data, args.device)
            this_round[name] = (time.perf_counter() - start) / args.steps
            times[name].append(this_round[name])
        ratios.append(this_round["bpr"] / this_round["plain"])

    # The loss alone, many times: the absolute cost of BPR's own work, free of the step's noise.
    with torch.no_grad():
        preds = model(data["img"])
    loss_times: dict[str, list[float]] = {"plain": [], "bpr": []}
    with torch.enable_grad():
        for _ in range(30):
            for name in ("plain", "bpr"):
                start = time.perf_counter()
                criteria[name](preds, data)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                loss_times[name].append(time.perf_counter() - start)
    extra_ms = (statistics.median(loss_times["bpr"]) - statistics.median(loss_times["plain"])) * 1000

    stats = criteria["bpr"].stats.summary()
    print(f"command: python benchmarks/bench_bpr_overhead.py --device {args.device} --rounds {args.rounds} "
          f"--steps {args.steps} --imgsz {args.imgsz} --batch {args.batch} --boxes {args.boxes}")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; yolov5n, batch {args.batch} at {args.imgsz} px, {args.boxes} boxes/image")
    for name in ("plain", "bpr"):
        print(f"  {name:5} step: median {statistics.median(times[name]) * 1000:.1f} ms "
              f"(min {min(times[name]) * 1000:.1f}) over {args.rounds} rounds x {args.steps} steps")
    overhead = (statistics.median(ratios) - 1) * 100
    print(f"  BPR time overhead: {overhead:+.2f} % (median of per-round ratios; target <= 3 %)")
    print(f"  loss call alone: plain {statistics.median(loss_times['plain']) * 1000:.1f} ms, "
          f"BPR {statistics.median(loss_times['bpr']) * 1000:.1f} ms: BPR adds {extra_ms:.1f} ms = "
          f"{extra_ms / (statistics.median(times['plain']) * 1000) * 100:.2f} % of a plain step")
    print(f"  measured drops: objectness {stats['obj_drop_fraction']:.3f} of {stats['negatives']} negatives, "
          f"box {stats['box_drop_fraction']:.3f} of {stats['low_iou_positives']} low-IoU positives")

    if args.device.startswith("cuda"):
        peaks = {}
        for name in ("plain", "bpr"):
            torch.cuda.reset_peak_memory_stats()
            step(model, criteria[name], data, args.device)
            peaks[name] = torch.cuda.max_memory_allocated() / 2**20
        unit = "MiB allocated by torch"
    else:
        peaks = {}
        for name in ("plain", "bpr"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", name, "--steps", "2", "--imgsz", str(args.imgsz),
                 "--batch", str(args.batch), "--boxes", str(args.boxes)],
                capture_output=True, text=True, check=True)
            peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
        unit = "MB peak RSS of a child process"
    print(f"  peak memory: plain {peaks['plain']:.0f}, BPR {peaks['bpr']:.0f} {unit}: "
          f"{(peaks['bpr'] / peaks['plain'] - 1) * 100:+.2f} % (target <= 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
