"""Measure: what is a teacher's score worth, on the animals it was never shown?

A self-training teacher trained with hidden boxes (`bpr experiment --hide F`) has mined the partially
labeled training frames (`bpr selftrain`, or the experiment's `selftrain1`): its pseudo-boxes and
ignore regions are in the project, each with its score. The boxes it was not shown are known (its
dataset's export.json), so at each score this gives what using everything from there up as
pseudo-boxes would have given: how many, the share that is a hidden animal (precision, a lower bound:
an animal nobody boxed counts as wrong), the share of the hidden animals found (recall), matched at
IoU >= 0.5, one to one, most confident first (bpr.selftrain.pseudo_quality), and the share of their
summed scores on hidden animals (what pseudo-boxes weighted by score, `--weight-by-score`, would train
on). Between each two scores it prints what a slice of an ignore band there holds: how many
regions, and the share on a hidden animal. It also prints the score the teacher's pseudo-boxes
started at (calibrated on the val frames, or fixed), and, by the size of the hidden animals (the
side of a square of their area, at the size the teacher trained at), the share it found.

With `--mine-at SIZE ...` the teacher mines again at each size, calibrated there, in a copy of the
project (a teacher trained small may find small animals when it looks at the frames larger); without
it, the mining stored is read. Nothing in the project is changed.

Run: python benchmarks/teacher_scores.py PROJECT --teacher RUN [--scores 0.1 0.2 0.3 0.5] [--mine-at 320 640]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = (8, 12, 16, 24)  # the edges of the size bins, in pixels at the teacher's training size


def found_by_size(project, teacher: str, scores: list[float]) -> list[tuple[str, int, list[float]]]:
    """(size bin, hidden animals in it, the share of them that a detection kept from each score up
    overlaps at IoU >= 0.5) over the partially labeled training frames."""
    import numpy as np

    from bpr.learn.training import export_manifest
    from bpr.results.evaluate import box_iou
    from bpr.selftrain import _by_frame

    hidden = set(json.loads(export_manifest(project, teacher).read_text())["hidden_box_ids"])
    trained_at = project.run(teacher).config["imgsz"]
    kept = _by_frame(project.pseudo_boxes(teacher=teacher, review=("pending", "accepted", "rejected")))
    videos = {v["id"]: v for v in project.videos()}
    sides, found = [], []
    for vid, frame, _ in project.split_frames("train", ("partial",)):
        truth = np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in project.boxes(vid, frame)
                          if b["id"] in hidden], float).reshape(-1, 4)
        if not len(truth):
            continue
        here = kept.get((vid, frame), [])
        boxes = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in here], float).reshape(-1, 4)
        score = np.array([r["score"] for r in here])
        overlaps = box_iou(boxes, truth) >= 0.5 if len(boxes) else np.zeros((0, len(truth)), bool)
        scale = trained_at / max(videos[vid]["width"], videos[vid]["height"])
        sides += list(np.sqrt((truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])) * scale)
        found += [[bool((overlaps[:, j] & (score >= s)).any()) for s in scores] for j in range(len(truth))]
    sides, found = np.array(sides), np.array(found, bool).reshape(-1, len(scores))
    edges = (0, *SIDES, np.inf)
    out = []
    for low, high in zip(edges, edges[1:]):
        chosen = (sides >= low) & (sides < high)
        name = f"{low:g}–{high:g} px" if np.isfinite(high) else f"{low:g} px and up"
        out.append((name, int(chosen.sum()), [float(found[chosen, i].mean()) if chosen.any() else 0.0
                                               for i in range(len(scores))]))
    return out


def report(project, teacher: str, scores: list[float]) -> None:
    from bpr.selftrain import pseudo_quality

    summary = project.run(teacher).summary or {}
    mined = summary["mined"]
    used = summary.get("pseudo_conf", mined["pseudo_conf"])
    at = f" at {mined['imgsz']} px" if mined.get("imgsz") else ""
    print(f"teacher {teacher}{at}: pseudo-boxes from score {used:.3g}"
          + (f" (calibrated: {mined['pseudo_precision']:.0%} right on val)" if mined["pseudo_conf"] is None
             else " (fixed)") + f", ignore regions from {mined['ignore_conf']:g}, "
          f"{'with' if mined['tta'] else 'without'} test-time augmentation")
    print("\n| from score | boxes | hidden animals among them | precision | recall | weighted by score: "
          "precision |\n|---|---|---|---|---|---|")
    shown = sorted(set(scores) | {used})
    found = {}  # from score: (boxes, hidden animals among them)
    for score in shown:
        q = pseudo_quality(project, teacher, from_score=score)
        found[score] = (q["pseudo_boxes"], round(q["precision"] * q["pseudo_boxes"]))
        print(f"| {score:.3g}{' (used)' if score == used else ''} | {q['pseudo_boxes']} | {found[score][1]} "
              f"| {q['precision']:.0%} | {q['recall']:.1%} of {q['hidden_boxes']} | {q['score_precision']:.0%} |")
    # Between two scores (an ignore band's slices): what the student is neither taught nor punished for
    print("\nBetween two scores (the hits of the upper score's boxes taken off, as they match first):\n\n"
          "| scores | boxes | a hidden animal |\n|---|---|---|")
    for low, high in zip(shown, shown[1:]):
        boxes, hits = (a - b for a, b in zip(found[low], found[high]))
        print(f"| {low:.3g} to {high:.3g} | {boxes} | {hits / boxes if boxes else 0:.0%} |")
    print(f"\nThe hidden animals it found, by size (at {project.run(teacher).config['imgsz']} px, the size it "
          "trained at):\n\n| side | hidden | " + " | ".join(f"found from {s:.3g}" for s in shown)
          + " |\n|---|---|" + "---|" * len(shown))
    for name, count, shares in found_by_size(project, teacher, shown):
        print(f"| {name} | {count} | " + " | ".join(f"{share:.0%}" for share in shares) + " |")


def mine_in_a_copy(project_folder: Path, teacher: str, size: int, scores: list[float]) -> None:
    """Mine again at ``size`` (calibrated there) in a copy of the project's store, and report."""
    from bpr.config import PseudoLabels, TrainConfig
    from bpr.data.store import Project
    from bpr.learn.training import export_manifest
    from bpr.selftrain import mine_round

    with tempfile.TemporaryDirectory() as tmp, Project.open(project_folder) as original, \
            Project.open(original.copy_store(Path(tmp) / "project")) as project:
        manifest = export_manifest(project, teacher)
        manifest.parent.mkdir(parents=True)
        shutil.copy(export_manifest(original, teacher), manifest)
        mined = project.run(teacher).summary["mined"]  # as it mined before, but for the size
        thresholds = {k: mined[k] for k in ("pseudo_precision", "pseudo_conf", "ignore_conf")}
        config = TrainConfig(protocol=project.run(teacher).config.get("protocol", "dusia"),
                             pseudo=PseudoLabels(**thresholds))
        mining = mine_round(project, teacher, mined["round"], config, tta=mined["tta"], imgsz=size)
        print(f"\n## mined again at {size} px: {mining.pseudo_boxes} pseudo-boxes, {mining.ignore_regions} "
              "ignore regions\n")
        report(project, teacher, scores)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from bpr.data.store import Project

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("--teacher", required=True, help="the run whose mining to score")
    parser.add_argument("--scores", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5])
    parser.add_argument("--mine-at", type=int, nargs="+", metavar="SIZE",
                        help="mine again at these sizes, in a copy of the project (minutes each on a CPU)")
    args = parser.parse_args(argv)
    with Project.open(args.project) as project:
        if "mined" not in (project.run(args.teacher).summary or {}):
            parser.error(f"{args.teacher} has not mined pseudo-boxes: run a self-training round from it first")
        if not args.mine_at:
            report(project, args.teacher, args.scores)
    for size in args.mine_at or []:
        mine_in_a_copy(Path(args.project), args.teacher, size, args.scores)
    print(f"\ncommand: python benchmarks/teacher_scores.py {args.project} --teacher {args.teacher} "
          f"--scores {' '.join(f'{s:g}' for s in args.scores)}"
          + (f" --mine-at {' '.join(map(str, args.mine_at))}" if args.mine_at else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
