"""Measure: does the missing-label finder find the animals the annotator left out?

A run trained with hidden boxes (`bpr experiment --hide F`, `bpr train --hide-fraction F`) knows which
training boxes it never saw: its dataset's `export.json` lists them. They are the "unboxed animals" of
a controlled partial-label set. This copies the project, removes those boxes from the copy (so its
training frames hold what the model was trained on), detects with the run's weights on the training
images, and matches the finder's suggestions to the hidden boxes at each confidence (same image,
IoU >= 0.5, one to one, most confident first):
- precision: the share of suggestions that are a hidden animal. A lower bound: a suggestion may be an
  animal the original annotators never boxed either;
- recall: the share of hidden animals suggested.
Models differ in calibration (one trained with BPR scores higher), so the same is also given for each
model's N most confident suggestions, whatever their confidence.
The project itself is never changed.

Run: python benchmarks/finder_recall.py PROJECT --run RUN [--weights W] [--conf 0.1 0.25 0.5] [--top 100 400]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MATCH_IOU = 0.5


def match(suggestions, hidden: dict[tuple[str, int], np.ndarray]) -> int:
    """How many suggestions are a hidden box: matched greedily, most confident first, each box once,
    as evaluation matches detections to ground truth."""
    from bpr.results.evaluate import ImageResult, greedy_hits

    by_image: dict[tuple[str, int], list] = {}
    for s in suggestions:
        by_image.setdefault((s.video_id, s.frame_index), []).append(s)
    found = 0
    for key, here in by_image.items():
        if key not in hidden:
            continue
        image = ImageResult(gt_boxes=hidden[key], gt_classes=np.zeros(len(hidden[key]), int),
                            boxes=np.array([s.box for s in here], float),
                            scores=np.array([s.confidence for s in here]), classes=np.zeros(len(here), int))
        found += int(greedy_hits(image, MATCH_IOU)[2].sum())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("--run", required=True, help="a run trained with hidden boxes")
    parser.add_argument("--weights", help="weights to detect with (default: the run's own)")
    parser.add_argument("--conf", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--top", type=int, nargs="+", default=[100, 400], help="the N most confident")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--imgsz", type=int, help="inference size (default: the size the weights were trained at)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bpr.results.detect import detect
    from bpr.results.review import missing_labels
    from bpr.data.store import Project
    from bpr.learn.training import export_manifest

    with Project.open(args.project) as source:
        run = source.run(args.run)
        manifest = json.loads(export_manifest(source, args.run).read_text())
        weights = Path(args.weights) if args.weights else source.resolve_path(run.weights or "")
        if not weights.is_file():
            raise SystemExit(f"no weights at {weights}: the run has not finished; give --weights")
        hidden_ids = manifest["hidden_box_ids"]
        if not hidden_ids:
            raise SystemExit(f"run {args.run} was trained on every box (no hidden boxes to find)")
        hidden: dict[tuple[str, int], list] = {}
        for vid, frame, *box in source.conn.execute(
                "SELECT video_id, frame_index, x1, y1, x2, y2 FROM boxes WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(hidden_ids),)):
            hidden.setdefault((vid, frame), []).append(box)
        tmp = tempfile.TemporaryDirectory()
        copy_folder = source.copy_store(Path(tmp.name) / "copy")
    hidden_boxes = {key: np.array(boxes, float) for key, boxes in hidden.items()}

    with tmp, Project.open(copy_folder) as copy:
        with copy.transaction():
            copy.conn.execute("DELETE FROM boxes WHERE id IN (SELECT value FROM json_each(?))",
                              (json.dumps(hidden_ids),))
        train = [v["id"] for v in copy.videos("train")]
        started = time.perf_counter()
        summary = detect(copy, weights=weights, videos=train, device=args.device, imgsz=args.imgsz,
                         progress=lambda done, total, _: print(f"  detecting {done}/{total}", end="\r"))
        print(f"detected on {summary.frames} training frames in {time.perf_counter() - started:.0f} s, "
              f"{summary.detections} detections at >= 0.01")
        rows, in_train = [], set(train)
        for conf in args.conf:
            suggestions = [s for s in missing_labels(copy, summary.run, conf=conf) if s.video_id in in_train]
            found = match(suggestions, hidden_boxes)
            rows.append((f"{conf:g}", len(suggestions), found))
        ranked = [s for s in missing_labels(copy, summary.run, conf=0.0) if s.video_id in in_train]
        for n in args.top:
            rows.append((f"top {n}", len(ranked[:n]), match(ranked[:n], hidden_boxes)))

    total = len(hidden_ids)
    print(f"command: python benchmarks/finder_recall.py {args.project} --run {args.run}"
          + (f" --weights {args.weights}" if args.weights else "")
          + f" --conf {' '.join(f'{c:g}' for c in args.conf)} --top {' '.join(map(str, args.top))}")
    print(f"hidden training boxes: {total} on {len(hidden_boxes)} images (hide fraction "
          f"{manifest['hide_fraction']:g}, seed {manifest['seed']}); a match is IoU >= {MATCH_IOU}")
    print(f"{'confidence':>10} {'suggestions':>11} {'hidden found':>12} {'precision':>9} {'recall':>7}")
    for which, n, found in rows:
        precision = f"{found / n:.1%}" if n else "-"
        print(f"{which:>10} {n:>11} {found:>12} {precision:>9} {found / total:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
