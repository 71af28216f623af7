"""Measure: do pseudo-boxes weighted by score (`--weight-by-score`) do better than full ones, on the demo?

Takes a demo project the main job ran on (`bpr-app --headless FOLDER`), trains its self-training round
again with the same settings and the pseudo-boxes weighted by their teacher's score (one run, about a
minute on 2 cores), and scores it against the demo's truth as the main job scores its methods: test
mAP50, the unboxed animals recovered, and the counting errors on the test video. One seed: a direction,
not a finding.

Run: python benchmarks/demo_weighting.py FOLDER
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from bpr import demo
    from bpr.config import TrainConfig
    from bpr.data.store import NotFoundError, Project
    from bpr.learn.training import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a demo project the main job ran on")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    report_file = folder / "exports" / "report.json"
    if not report_file.exists():
        parser.error(f"{folder} has no main job's report: run `bpr-app --headless {folder}` first")
    report = json.loads(report_file.read_text())
    with Project.open(folder) as project:
        student = next(r for r in project.runs() if r.config["pseudo"].get("teacher_run"))
        config = TrainConfig.from_dict(student.config)
        config.pseudo = dataclasses.replace(config.pseudo, weight_by_score=True)
        name = f"{student.name}-weighted"
        try:
            project.run(name)
            parser.error(f"{folder} has a run {name} already: use a fresh copy of the project")
        except NotFoundError:
            pass
        train(project, config, name=name)
        truth = json.loads((folder / demo.TRUTH_FILE).read_text())
        test_video = next(v["id"] for v in project.videos() if v["split"] == "test")
        weighted = demo.score_against_truth(project, name, truth, test_video, pseudo_from=config.pseudo.teacher_run)
    print(f"command: python benchmarks/demo_weighting.py {args.folder}")
    print("| method | test mAP50 | unboxed animals recovered | MaxN error | mean-count error |\n|---|---|---|---|---|")
    for method, scores in [*report["methods"].items(), ("self-training, weighted by score", weighted)]:
        print(f"| {method} | {scores['test_mAP50']:.3f} | {scores['unboxed_recovered']:.0%} | "
              f"{scores['maxn_abs_error']:.2f} | {scores['mean_count_abs_error']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
