"""A real run: train on the brittlestar ROV frames with and without BPR, report test mAP50 of each.

This shows the whole path works on real data (import -> export -> BPR training -> evaluation); it is
not an accuracy claim (the multi-seed experiment with a learned baseline is the experiment command's
job). mAP here is ultralytics' (101-point interpolated), on the test split, of each run's best.pt.

Run: python benchmarks/bench_brittlestar.py [--epochs N] [--imgsz S] [--hide F] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "brittlestar" / "data.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hide", type=float, default=0.5, help="fraction of training boxes hidden")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench-brittlestar"),
                        help="project folder (kept, so finished runs are not redone)")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found (needs the ../shared checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from bpr.data.formats import import_yolo
    from bpr.learn.loss import Rebalancing
    from bpr.offline import configure
    from bpr.data.store import NotFoundError, Project
    from bpr.learn.training import TrainConfig, run_dataset, run_folder, train

    configure()
    from ultralytics import YOLO

    project = Project.open(args.out, create=True)
    if not project.videos():
        import_yolo(project, DATA)
    settings = {
        "baseline": Rebalancing(),
        "bpr-obj75": Rebalancing(p_obj=0.75),
        "bpr-obj75-box25": Rebalancing(p_obj=0.75, p_box=0.25),
    }
    print(f"command: python benchmarks/bench_brittlestar.py --epochs {args.epochs} --imgsz {args.imgsz} "
          f"--batch {args.batch} --hide {args.hide} --device {args.device} --out {args.out}")
    rows = []
    for name, rebalancing in settings.items():
        config = TrainConfig(model="yolov5n.yaml", epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                             device=args.device, hide_fraction=args.hide, seed=0, rebalancing=rebalancing)
        try:
            run = project.run(name)
        except NotFoundError:
            run = None
        start = time.time()
        if run is None or run.status != "finished":
            run = train(project, config, name=name) if run is None else train(project, resume=name)
        minutes = (time.time() - start) / 60
        weights = project.resolve_path(run.weights)
        data = run_dataset(project, name) / "data.yaml"
        test = YOLO(str(weights)).val(data=str(data), split="test", imgsz=args.imgsz, batch=args.batch,
                                      plots=False, verbose=False,  # not ./runs/detect/val in the cwd
                                      project=str(run_folder(project, name)), name="test", exist_ok=True)
        row = {"run": name, "p_obj": rebalancing.p_obj, "p_box": rebalancing.p_box,
               "val_mAP50": run.metrics[-1].get("mAP50"), "test_mAP50": float(test.box.map50),
               "test_mAP50-95": float(test.box.map), "train_minutes": round(minutes, 1),
               "obj_drop_measured": run.metrics[-1]["drop"]["obj_drop_fraction"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.epochs} epochs, yolov5n from scratch at {args.imgsz} px, {args.hide:.0%} of training "
          f"boxes hidden (seed 0); mAP by ultralytics (101-point), test split, best.pt")
    print("| run | p_obj | p_box | val mAP50 (last epoch) | test mAP50 | test mAP50-95 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['p_obj']} | {r['p_box']} | {r['val_mAP50']:.4f} | {r['test_mAP50']:.4f} "
              f"| {r['test_mAP50-95']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
