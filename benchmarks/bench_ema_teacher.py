"""Benchmark: cost of the EMA teacher per training step against a plain step (target: <= 1.4x on the CPU).

A training step is forward + loss + backward of yolov5n on a batch of 16 images at 320 px (as
`bpr experiment` trains) with 15 boxes per image, every image partially labeled. The teacher's step
adds what bpr.learn.pseudo.OnlineTeacher does after the burn-in: the EMA model's forward pass on the
batch, NMS, and the mining against the labels, and then the loss over the extra rows. Two teachers:
one at the default ignore score (0.1) with pseudo-boxes from 0.5, and the worst case, thresholds of 0 (NMS keeps
up to 300 boxes an image, all added). Plain and teacher steps are interleaved in one process so both
see the same machine load. The EMA is ultralytics' ModelEMA; its update runs in both (ultralytics does
it every step anyway).

Run: python benchmarks/bench_ema_teacher.py [--device cpu|cuda] [--rounds N] [--steps K]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(device: str, imgsz: int, batch: int, boxes: int):
    import torch
    from bench_bpr_overhead import model_and_batch

    from bpr.config import PseudoLabels
    from bpr.learn.loss import Rebalancing, build_criterion
    from bpr.learn.pseudo import OnlineTeacher
    from ultralytics.utils.torch_utils import ModelEMA

    model, data = model_and_batch(device, imgsz, batch, boxes)
    data = {k: v.to(device) for k, v in data.items()}
    names = [f"/d/train/images/{i}.jpg" for i in range(batch)]
    data["im_file"] = names
    criterion = build_criterion(model, Rebalancing())  # no drop: ultralytics' loss, less the ignore rows
    trainer = SimpleNamespace(ema=ModelEMA(model), epoch=100, amp=False, device=torch.device(device))
    partial = {Path(n).name for n in names}
    teachers = {
        "plain": None,
        # the default thresholds, with the calibrated pseudo-box score at 0.5 (where it comes from costs nothing)
        "teacher": OnlineTeacher(PseudoLabels(teacher="ema", burn_in=0), partial, calibrated=0.5),
        "teacher, thresholds 0": OnlineTeacher(PseudoLabels(teacher="ema", burn_in=0, pseudo_conf=0.0,
                                                            ignore_conf=0.0), partial),
    }
    return model, data, criterion, trainer, teachers


def step(model, criterion, trainer, teacher, data, device):
    import torch

    batch = teacher(trainer, data) if teacher is not None else data
    model.zero_grad(set_to_none=True)
    loss, _ = criterion(model(batch["img"]), batch)
    loss.sum().backward()
    trainer.ema.update(model)
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="steps per configuration per round")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--boxes", type=int, default=15, help="boxes per image")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model, data, criterion, trainer, teachers = setup(args.device, args.imgsz, args.batch, args.boxes)
    for teacher in teachers.values():  # warm-up
        step(model, criterion, trainer, teacher, data, args.device)
    times: dict[str, list[float]] = {name: [] for name in teachers}
    ratios: dict[str, list[float]] = {name: [] for name in teachers if name != "plain"}
    for r in range(args.rounds):
        order = list(teachers) if r % 2 == 0 else list(reversed(teachers))
        this_round = {}
        for name in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, criterion, trainer, teachers[name], data, args.device)
            this_round[name] = (time.perf_counter() - start) / args.steps
            times[name].append(this_round[name])
        for name in ratios:
            ratios[name].append(this_round[name] / this_round["plain"])

    print(f"command: python benchmarks/bench_ema_teacher.py --device {args.device} --rounds {args.rounds} "
          f"--steps {args.steps} --imgsz {args.imgsz} --batch {args.batch} --boxes {args.boxes}")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; yolov5n, batch {args.batch} at {args.imgsz} px, {args.boxes} boxes/image")
    for name in teachers:
        print(f"  {name:22} step: median {statistics.median(times[name]) * 1000:.0f} ms "
              f"(min {min(times[name]) * 1000:.0f}) over {args.rounds} rounds x {args.steps} steps")
    for name, values in ratios.items():
        counts = teachers[name].counts
        added = (counts["pseudo_boxes"] + counts["ignore_regions"]) / max(counts["batches"], 1) / args.batch
        print(f"  {name}: {statistics.median(values):.2f}x a plain step (median of per-round ratios; target "
              f"<= 1.4x), {added:.0f} boxes added an image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
