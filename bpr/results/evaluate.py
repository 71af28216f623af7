"""mAP@0.5 and mAP@0.5:0.95 against fully labeled frames, two ways, and which is which.

- **ultralytics**: its own matching (``BaseValidator.match_predictions``) and ``ap_per_class``: the
  precision envelope interpolated at 101 points and integrated with the trapezoid rule.
- **COCO**: pycocotools' procedure (greedy matching in score order per image and class, at most 100
  detections per image and class, the precision envelope read at 101 recall points by step lookup,
  a plain mean), implemented here and checked against pycocotools in the tests.

The two differ by a few tenths of a point on the same predictions; reports say which one a figure is.
The paper reports mAP50.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bpr.data.store import LINK_HINT, Project

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ImageResult:
    """Ground truth and predictions of one image. Boxes are (N, 4) xyxy pixels; classes int."""

    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    name: str = ""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def coco_ap(images: list[ImageResult], classes: list[int], max_dets: int = 100) -> np.ndarray:
    """COCO average precision, shape (len(IOU_THRESHOLDS), len(classes)); -1 for classes without GT."""
    out = -np.ones((len(IOU_THRESHOLDS), len(classes)))
    for ci, c in enumerate(classes):
        scores, matched, n_gt = [], [], 0
        for image in images:
            gt = image.gt_boxes[image.gt_classes == c]
            keep = image.classes == c
            det, det_scores = image.boxes[keep], image.scores[keep]
            order = np.argsort(-det_scores, kind="mergesort")[:max_dets]
            det, det_scores = det[order], det_scores[order]
            n_gt += len(gt)
            ious = box_iou(det, gt)
            hits = np.zeros((len(IOU_THRESHOLDS), len(det)), bool)
            for ti, t in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(gt), bool)
                for d in range(len(det)):
                    best, m = min(t, 1 - 1e-10), -1
                    for g in range(len(gt)):
                        if taken[g] or ious[d, g] < best:
                            continue
                        best, m = ious[d, g], g
                    if m >= 0:
                        taken[m] = hits[ti, d] = True
            scores.append(det_scores)
            matched.append(hits)
        if n_gt == 0:
            continue
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="mergesort")
        hits = np.concatenate(matched, axis=1)[:, order] if matched else np.zeros((len(IOU_THRESHOLDS), 0), bool)
        tp = np.cumsum(hits, axis=1).astype(float)
        fp = np.cumsum(~hits, axis=1).astype(float)
        for ti in range(len(IOU_THRESHOLDS)):
            recall = tp[ti] / n_gt
            precision = tp[ti] / (fp[ti] + tp[ti] + np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]   # the envelope
            where = np.searchsorted(recall, RECALL_POINTS, side="left")
            q = np.array([precision[i] if i < len(precision) else 0.0 for i in where])
            out[ti, ci] = q.mean()
    return out


def ultralytics_ap(images: list[ImageResult], names: dict[int, str]) -> dict[str, Any]:
    """ultralytics' AP (its match_predictions and ap_per_class on the same predictions)."""
    import torch

    from bpr.offline import configure

    configure()
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class

    matcher = SimpleNamespace(iouv=torch.tensor(IOU_THRESHOLDS, dtype=torch.float32))
    tps, confs, pred_cls, target_cls = [], [], [], []
    for image in images:
        order = np.argsort(-image.scores, kind="stable")
        boxes, scores, classes = image.boxes[order], image.scores[order], image.classes[order]
        target_cls.append(image.gt_classes)
        if len(boxes) == 0:
            continue
        if len(image.gt_boxes):
            iou = torch.tensor(box_iou(image.gt_boxes, boxes), dtype=torch.float32)
            correct = BaseValidator.match_predictions(
                matcher, torch.tensor(classes), torch.tensor(image.gt_classes), iou).numpy()
        else:
            correct = np.zeros((len(boxes), len(IOU_THRESHOLDS)), bool)
        tps.append(correct)
        confs.append(scores)
        pred_cls.append(classes)
    target = np.concatenate(target_cls) if target_cls else np.zeros(0)
    if not tps:
        return {"ap": np.zeros((0, len(IOU_THRESHOLDS))), "classes": np.unique(target),
                "precision": np.zeros(0), "recall": np.zeros(0)}
    result = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pred_cls), target,
                          names=names)
    _, _, p, r, _, ap, unique_classes = result[:7]
    return {"ap": ap, "classes": unique_classes, "precision": p, "recall": r}


def greedy_hits(image: ImageResult, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, classes, hits) of one image's detections in descending score order; a detection hits
    when a ground-truth box of its class, not yet taken, overlaps it at ``iou`` or more (the one with
    the highest IoU is taken). Keeping only some classes, or only scores above a threshold, gives the
    same hits for the detections kept: they are matched before everything ranked below them."""
    order = np.argsort(-image.scores, kind="mergesort")
    scores, classes = image.scores[order], image.classes[order]
    ious = box_iou(image.boxes[order], image.gt_boxes)
    taken = np.zeros(len(image.gt_boxes), bool)
    hits = np.zeros(len(order), bool)
    for d, c in enumerate(classes):
        candidates = np.where((image.gt_classes == c) & ~taken & (ious[d] >= iou))[0]
        if len(candidates):
            taken[candidates[ious[d, candidates].argmax()]] = True
            hits[d] = True
    return scores, classes, hits


def precision_recall_at(images: list[ImageResult], conf: float, iou: float = 0.5) -> tuple[float, float]:
    """Precision and recall of the detections at or above ``conf`` (greedy matching at ``iou``)."""
    tp = fp = n_gt = 0
    for image in images:
        scores, _, hits = greedy_hits(image, iou)
        kept = hits[scores >= conf]
        tp += int(kept.sum())
        fp += int((~kept).sum())
        n_gt += len(image.gt_boxes)
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / n_gt if n_gt else 0.0)


def f1_best_conf(images: list[ImageResult], iou: float = 0.5) -> float:
    """The confidence threshold at which the detections' F1 is highest (greedy matching at ``iou``):
    the threshold a run's counts are read at, chosen on val so that test never sees it chosen."""
    scored = [(scores, hits) for scores, _, hits in (greedy_hits(image, iou) for image in images)]
    scores = np.concatenate([s for s, _ in scored] or [np.zeros(0)])
    hits = np.concatenate([h for _, h in scored] or [np.zeros(0, bool)])
    if not len(scores):
        return 1.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    f1 = 2 * tp / (np.arange(1, len(order) + 1) + sum(len(i.gt_boxes) for i in images))
    return float(scores[order][int(np.argmax(f1))])


def calibrated_conf(images: list[ImageResult], precision: float, iou: float = 0.5) -> float:
    """The lowest score at which at least ``precision`` of the detections scored at or above it match a
    label of their species (greedy matching at ``iou``): a teacher's pseudo-box score, read off fully
    labeled frames instead of taken on trust (a model trained from scratch rarely scores 0.5)."""
    from bpr.learn.pseudo import lowest_threshold_reaching  # torch: not at this module's import

    scored = [greedy_hits(image, iou) for image in images]
    scores = np.concatenate([s for s, _, _ in scored] or [np.zeros(0)])
    hits = np.concatenate([h for _, _, h in scored] or [np.zeros(0, bool)])
    order = np.argsort(-scores, kind="mergesort")
    right = np.cumsum(hits[order]) / np.arange(1, len(order) + 1)
    return lowest_threshold_reaching(scores[order], right, precision)


def class_thresholds(images: list[ImageResult], names: dict[int, str], iou: float = 0.5) -> dict[str, float]:
    """Per species with a label among ``images``: the F1-best threshold of its own detections."""
    out = {}
    for c, name in names.items():
        own = [ImageResult(gt_boxes=i.gt_boxes[i.gt_classes == c], gt_classes=i.gt_classes[i.gt_classes == c],
                           boxes=i.boxes[i.classes == c], scores=i.scores[i.classes == c],
                           classes=i.classes[i.classes == c]) for i in images]
        if any(len(i.gt_boxes) for i in own):
            out[name] = f1_best_conf(own, iou)
    return out


def count_mae(images: list[ImageResult], conf: float) -> float:
    """Mean absolute error of the per-frame count of detections at or above ``conf`` against the labels."""
    if not images:
        return 0.0
    return float(np.mean([abs(int((i.scores >= conf).sum()) - len(i.gt_boxes)) for i in images]))


@dataclass
class Evaluation:
    split: str
    images: int
    boxes: int
    weights: str
    imgsz: int
    coco: dict[str, float] = field(default_factory=dict)         # mAP50, mAP50-95
    ultralytics: dict[str, float] = field(default_factory=dict)  # mAP50, mAP50-95
    per_class: list[dict] = field(default_factory=list)
    conf: float = 0.25
    precision: float = 0.0
    recall: float = 0.0
    pr_curve: str | None = None
    left_out: int = 0  # fully labeled frames of the split not scored: their video or image has no file
    f1_best_conf: float = 0.0          # the threshold of the best F1 on this split
    count_conf: float = 0.0            # the threshold the counting error is read at
    count_mae: float = 0.0             # mean absolute error of the per-frame counts there
    thresholds: dict[str, float] = field(default_factory=dict)  # per species: its F1-best threshold here

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(images: list[ImageResult], names: dict[int, str], conf: float = 0.25) -> dict[str, Any]:
    """Both mAPs, per class, and P/R at ``conf`` for a list of images."""
    classes = sorted(names)
    coco = coco_ap(images, classes)
    valid = coco[:, (coco[0] > -1)]
    ultra = ultralytics_ap(images, names)
    ultra_ap = ultra["ap"]
    per_class = []
    ultra_by_class = {int(c): ultra_ap[i] for i, c in enumerate(ultra["classes"])}
    for ci, c in enumerate(classes):
        n = int(sum((im.gt_classes == c).sum() for im in images))
        row = {"class": c, "name": names[c], "boxes": n}
        if n:
            row.update({"coco_mAP50": float(coco[0, ci]), "coco_mAP50-95": float(coco[:, ci].mean()),
                        "ultralytics_mAP50": float(ultra_by_class.get(c, np.zeros(10))[0]),
                        "ultralytics_mAP50-95": float(ultra_by_class.get(c, np.zeros(10)).mean())})
        per_class.append(row)
    precision, recall = precision_recall_at(images, conf)
    return {
        "coco": {"mAP50": float(valid[0].mean()) if valid.size else 0.0,
                 "mAP50-95": float(valid.mean()) if valid.size else 0.0},
        "ultralytics": {"mAP50": float(ultra_ap[:, 0].mean()) if len(ultra_ap) else 0.0,
                        "mAP50-95": float(ultra_ap.mean()) if len(ultra_ap) else 0.0},
        "per_class": per_class, "precision": precision, "recall": recall,
    }


def pr_curve_image(images: list[ImageResult], names: dict[int, str], path: str | os.PathLike) -> Path:
    """Precision-recall curves at IoU 0.5, one per class, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matched = [greedy_hits(im, 0.5) for im in images]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    for c, name in names.items():
        n_gt = sum(int((im.gt_classes == c).sum()) for im in images)
        if not n_gt:
            continue
        scores = np.concatenate([s[k == c] for s, k, _ in matched])  # n_gt > 0: some image exists
        hits = np.concatenate([h[k == c] for _, k, h in matched])
        order = np.argsort(-scores, kind="mergesort")
        h = hits[order]
        tp, fp = np.cumsum(h), np.cumsum(~h)
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1)
        ax.plot(np.r_[0, recall], np.r_[1, precision], label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR at IoU 0.5")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def scored_frames(project: Project, model, frames: list[tuple[dict, int]], imgsz: int, device: str,
                  batch: int = 16, augment: bool = False, progress=None) -> list[ImageResult]:
    """A loaded model's detections (from confidence 0.001) on labeled frames, beside their labels. The
    model's class names are matched to the project's species by name (case-insensitive); boxes of
    species the model does not know are left out of the ground truth."""
    from bpr.results.detect import predict_frames

    names = {int(k): v for k, v in model.names.items()}
    class_of = {v.lower(): k for k, v in names.items()}
    images = []
    for (video, frame), (boxes, scores, classes) in zip(
            frames, predict_frames(project, model, frames, imgsz=imgsz, conf=0.001, device=device,
                                   batch=batch, augment=augment, progress=progress)):
        gt = [(b, class_of[b["species"].lower()]) for b in project.boxes(video["id"], frame)
              if b["species"].lower() in class_of]
        images.append(ImageResult(
            gt_boxes=np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b, _ in gt], float).reshape(-1, 4),
            gt_classes=np.array([c for _, c in gt], int), boxes=boxes, scores=scores, classes=classes,
            name=f"{video['id']}:{frame}"))
    return images


def evaluate(project: Project, weights: str | os.PathLike, split: str = "test", conf: float = 0.25,
             imgsz: int | None = None, device: str = "auto", batch: int = 16, pr_curve: str | os.PathLike | None = None,
             progress=None, count_conf: float | None = None) -> Evaluation:
    """Run ``weights`` over the split's fully labeled frames and score them both ways.

    The model's class names are matched to the project's species by name (case-insensitive); boxes
    of species the model does not know are not counted as ground truth. ``imgsz`` defaults to the
    size the weights were trained at. The counting error is read at ``count_conf`` (a threshold chosen on
    another split: f1_best_conf of val), else at this split's own F1-best threshold.
    """
    from bpr.results.detect import inference_size, load_model

    project.check_files()
    frames, left_out = project.readable_frames(split, ("full",))
    if not frames:
        raise ValueError(f"the {split} split has no fully labeled frames with a readable video or image"
                         + (f" ({left_out} without their file: {LINK_HINT})" if left_out else ""))
    model, device = load_model(weights, device)
    imgsz = inference_size(model, imgsz)
    names = {int(k): v for k, v in model.names.items()}
    images = scored_frames(project, model, frames, imgsz=imgsz, device=device, batch=batch, progress=progress)
    result = summarise(images, names, conf)
    best = f1_best_conf(images)
    count_conf = best if count_conf is None else count_conf
    evaluation = Evaluation(split=split, images=len(images), boxes=int(sum(len(i.gt_boxes) for i in images)),
                            weights=str(weights), imgsz=imgsz, conf=conf, left_out=left_out, f1_best_conf=best,
                            count_conf=count_conf, count_mae=count_mae(images, count_conf),
                            thresholds=class_thresholds(images, names), **result)
    if pr_curve is not None:
        evaluation.pr_curve = str(pr_curve_image(images, names, pr_curve))
    return evaluation


THRESHOLD_RULE = "the F1-best confidence on the run's fully labeled val frames (IoU 0.5), per species"


def choose_thresholds(project: Project, run: str, device: str = "auto", progress=None) -> dict | None:
    """Choose a run's counting thresholds on its val frames and keep them in its record (``summary``):
    per species its own F1-best threshold, and for a species without a val label the F1-best threshold
    of all detections. None (nothing stored) when the val split has no fully labeled frame to choose on."""
    record = project.run(run)
    try:
        result = evaluate(project, project.resolve_path(record.weights), split="val", device=device,
                          progress=progress)
    except ValueError:
        return None
    chosen = {"rule": THRESHOLD_RULE, "overall": result.f1_best_conf, "species": result.thresholds,
              "val_mAP50": result.ultralytics["mAP50"]}
    project.update_run(run, summary={**(project.run(run).summary or {}), "thresholds": chosen})
    return chosen
