"""Measure: what is a teacher's score worth, on the animals it was never shown?

A self-training teacher trained with hidden boxes (`bpr experiment --hide F`) has mined the partially
labeled training frames (`bpr selftrain`, or the experiment's `selftrain1`): its pseudo-boxes and
ignore regions are in the project, each with its score. The boxes it was not shown are known (its
dataset's export.json), so at each score this gives what using everything from there up as
pseudo-boxes would have given: how many, the share that is a hidden animal (precision, a lower bound:
an animal nobody boxed counts as wrong), the share of the hidden animals found (recall), matched at
IoU >= 0.5, one to one, most confident first (bpr.selftrain.pseudo_quality), and the share of their
summed scores on hidden animals (what pseudo-boxes weighted by score, `--weight-by-score`, would train
on). It also prints the score the teacher's pseudo-boxes started at (calibrated on the val frames, or
fixed). Nothing is changed.

Run: python benchmarks/teacher_scores.py PROJECT --teacher RUN [--scores 0.1 0.2 0.3 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from bpr.data.store import Project
    from bpr.selftrain import pseudo_quality

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("--teacher", required=True, help="the run whose mining to score")
    parser.add_argument("--scores", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5])
    args = parser.parse_args(argv)
    with Project.open(args.project) as project:
        summary = project.run(args.teacher).summary or {}
        if "mined" not in summary:
            parser.error(f"{args.teacher} has not mined pseudo-boxes: run a self-training round from it first")
        mined = summary["mined"]
        used = summary.get("pseudo_conf", mined["pseudo_conf"])
        print(f"teacher {args.teacher}: pseudo-boxes from score {used:.3g}"
              + (f" (calibrated: {mined['pseudo_precision']:.0%} right on val)" if mined["pseudo_conf"] is None
                 else " (fixed)") + f", ignore regions from {mined['ignore_conf']:g}, "
              f"{'with' if mined['tta'] else 'without'} test-time augmentation")
        print("\n| from score | boxes | hidden animals among them | precision | recall | weighted by score: "
              "precision |\n|---|---|---|---|---|---|")
        for score in sorted(set(args.scores) | {used}):
            q = pseudo_quality(project, args.teacher, from_score=score)
            hits = round(q["precision"] * q["pseudo_boxes"])
            print(f"| {score:.3g}{' (used)' if score == used else ''} | {q['pseudo_boxes']} | {hits} "
                  f"| {q['precision']:.0%} | {q['recall']:.1%} of {q['hidden_boxes']} | {q['score_precision']:.0%} |")
    print(f"\ncommand: python benchmarks/teacher_scores.py {args.project} --teacher {args.teacher} "
          f"--scores {' '.join(f'{s:g}' for s in args.scores)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
