"""Pseudo-boxes and ignore regions from a teacher's detections: partial-label learning that mines the
animals nobody boxed instead of only reweighting the loss.

On a partially labeled training frame a teacher detection that overlaps no label (IoU < MATCH_IOU with
each) is most likely an unboxed animal when the teacher is sure of it, and may be one when it is not:
- from the pseudo-box score up it is a **pseudo-box**, trained on as an animal of its class;
- from ``ignore_conf`` up to that score it is an **ignore region**: the loss neither punishes nor
  rewards the negatives on it (bpr.learn.loss, the ignore band).
This is Efficient Teacher's split of a teacher's scores (positive from 0.6, ignored from 0.1), with the
thresholds of bpr.config.PseudoLabels; the pseudo-box score is calibrated to each teacher on the fully
labeled val frames unless fixed (a round's teacher before it mines, the EMA teacher at each epoch's
validation, which ultralytics runs on that same EMA model). A detection near one the user rejected
(IoU >= MATCH_IOU) is never used.

Two teachers give the detections: the previous round of self-training (bpr.selftrain, detections
stored in the project), or the model's own running average during training (OnlineTeacher, nothing
stored). Ignore regions ride through ultralytics' augmentation as label rows of IGNORE_CLASS, and
pseudo-boxes weighted by their score as rows of a class that holds the score (bpr.learn.loss.weighted_class),
which ultralytics' label files cannot hold (it refuses negative classes): an export writes them beside
the labels, in ``ignore_regions/`` and ``pseudo_boxes/``, and add_teacher_rows puts them into the training
dataset's labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bpr.config import PseudoLabels
from bpr.data.dataset import IGNORE_FOLDER, PSEUDO_FOLDER
from bpr.learn.loss import IGNORE_CLASS, pairwise_iou, weighted_class

MATCH_IOU = 0.5  # a detection at this IoU or more with a label is that label, not a new animal


def mine(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, ignore_conf: float,
         pseudo_conf: float | None, rejected: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo, ignore): boolean masks over one frame's teacher detections that overlap no label and no
    rejected pseudo-box: pseudo-boxes from ``pseudo_conf`` up (none where it is None: the ignore band
    alone), ignore regions from ``ignore_conf`` up to it.

    boxes (N, 4) and labels (M, 4), rejected (R, 4) are xyxy in the same units; scores (N,).
    """
    keep = scores >= ignore_conf
    for others in (labels, rejected):
        if others is not None and len(others) and len(boxes):
            keep &= pairwise_iou(boxes[None].float(), others[None].float())[0].amax(-1) < MATCH_IOU
    if pseudo_conf is None:
        return torch.zeros_like(keep), keep
    pseudo = keep & (scores >= pseudo_conf)
    return pseudo, keep & ~pseudo


def lowest_threshold_reaching(thresholds: np.ndarray, precision: np.ndarray, target: float) -> float:
    """The lowest threshold at which ``precision`` (of what scores at or above it) reaches ``target``;
    1.0 (nothing passes) where none does."""
    reached = np.asarray(thresholds)[np.asarray(precision) >= target]
    return float(reached.min()) if len(reached) else 1.0


def add_teacher_rows(dataset) -> int:
    """Append each training image's ignore regions (its file in ``ignore_regions/``, if any) as rows of
    IGNORE_CLASS, and its weighted pseudo-boxes (``pseudo_boxes/``, lines of class, box and score) as rows
    of their weighted_class, to its labels in an ultralytics YOLODataset; returns how many were added.
    They are then mosaicked, flipped and scaled with the image's boxes."""
    added = 0
    for label in dataset.labels:
        image = Path(label["im_file"])
        for folder, columns in ((IGNORE_FOLDER, 5), (PSEUDO_FOLDER, 6)):
            side = image.parent.parent / folder / (image.stem + ".txt")
            if not side.exists():
                continue
            rows = np.loadtxt(side, ndmin=2, dtype=np.float32).reshape(-1, columns)
            if not len(rows):
                continue
            cls = (np.full(len(rows), IGNORE_CLASS, np.float32) if folder == IGNORE_FOLDER
                   else weighted_class(rows[:, 0], rows[:, 5]).astype(np.float32))
            label["cls"] = np.concatenate((label["cls"].reshape(-1, 1), cls.reshape(-1, 1)))
            label["bboxes"] = np.concatenate((label["bboxes"].reshape(-1, 4), rows[:, 1:5]))
            added += len(rows)
    return added


class OnlineTeacher:
    """The EMA teacher: after the burn-in, ultralytics' own ``trainer.ema`` model detects on each
    training batch, and its detections on the partially labeled images become that step's
    pseudo-boxes and ignore regions. No extra training run; the checkpoints stay plain."""

    def __init__(self, settings: PseudoLabels, partial_images: set[str], calibrated: float | None = None):
        self.settings = settings
        self.partial_images = partial_images
        self.calibrated = calibrated  # the pseudo-box score read off the latest validation
        self.counts = {"pseudo_boxes": 0, "ignore_regions": 0, "batches": 0}
        self.epoch_conf = self.pseudo_conf

    @property
    def pseudo_conf(self) -> float | None:
        """The score pseudo-boxes start at now; None: no pseudo-boxes (the ignore band alone, or a
        calibrated score before the first validation)."""
        if not self.settings.pseudo_boxes:
            return None
        return self.settings.pseudo_conf if self.settings.pseudo_conf is not None else self.calibrated

    def calibrate(self, box_metrics) -> None:
        """Read the pseudo-box score off ultralytics' validation of the EMA model: its precision by
        confidence (``p_curve`` at ``px``), averaged over the species that have a detection there.
        Past a species' top score ultralytics reports precision 1 with recall 0 (nothing detected, nothing
        wrong): counted, a species the model barely detects would lift the mean to the target at a
        score where the others are still mostly wrong."""
        px = np.asarray(box_metrics.px, dtype=float)
        precision = np.asarray(box_metrics.p_curve, dtype=float).reshape(-1, len(px))
        recall = np.asarray(box_metrics.r_curve, dtype=float).reshape(-1, len(px))
        detected = (precision < 1) | (recall > 0)
        counted = detected.sum(0)
        mean = np.where(counted > 0, (precision * detected).sum(0) / np.maximum(counted, 1), 0.0)
        self.calibrated = lowest_threshold_reaching(px, mean, self.settings.pseudo_precision) \
            if len(precision) else 1.0

    def reset(self) -> None:
        """At each epoch's start: the epoch's counts, and the pseudo-box score it uses."""
        self.counts = dict.fromkeys(self.counts, 0)
        self.epoch_conf = self.pseudo_conf

    def sum_over_ranks(self, device) -> None:
        """Sum the counts over the ranks of a DDP run."""
        import torch.distributed as dist

        values = torch.tensor(list(self.counts.values()), dtype=torch.long, device=device)
        dist.all_reduce(values)
        self.counts = dict(zip(self.counts, values.tolist()))

    def share_calibration(self, device) -> None:
        """In a DDP run, rank 0's calibrated score to every rank (all validate; rank 0 reads the metrics)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        value = torch.tensor([-1.0 if self.calibrated is None else self.calibrated], device=device)
        dist.broadcast(value, 0)
        self.calibrated = None if value.item() < 0 else value.item()

    def applies(self, trainer) -> bool:
        return trainer.epoch >= self.settings.burn_in and getattr(trainer, "ema", None) is not None

    @torch.no_grad()
    def __call__(self, trainer, batch: dict[str, Any]) -> dict[str, Any]:
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import xywh2xyxy, xyxy2xywh
        from ultralytics.utils.torch_utils import autocast

        if not self.applies(trainer):
            return batch
        names = [str(f).replace("\\", "/").rsplit("/", 1)[-1] for f in batch["im_file"]]
        partial = [i for i, name in enumerate(names) if name in self.partial_images]
        if not partial:
            return batch
        teacher = trainer.ema.ema
        images = batch["img"][partial]
        with autocast(trainer.amp, device=trainer.device.type):
            out = teacher(images)
        predictions = out[0] if isinstance(out, (list, tuple)) else out
        detections = non_max_suppression(predictions.float(), conf_thres=self.settings.ignore_conf,
                                         iou_thres=0.7, max_det=300, end2end=getattr(teacher, "end2end", False))
        height, width = batch["img"].shape[2:]
        scale = torch.tensor([width, height, width, height], device=images.device, dtype=torch.float32)
        cls, bboxes, index = [batch["cls"].view(-1, 1)], [batch["bboxes"]], [batch["batch_idx"].view(-1)]
        for i, found in zip(partial, detections):
            mine_here = (batch["batch_idx"].view(-1) == i) & (batch["cls"].view(-1) != IGNORE_CLASS)
            labels = xywh2xyxy(batch["bboxes"][mine_here]) * scale
            pseudo, ignore = mine(found[:, :4], found[:, 4], labels, self.settings.ignore_conf, self.epoch_conf)
            if not self.settings.ignore_band:
                ignore = torch.zeros_like(ignore)
            species = weighted_class(found[:, 5], found[:, 4]) if self.settings.weight_by_score else found[:, 5]
            for mask, klass in ((pseudo, species), (ignore, torch.full_like(found[:, 5], IGNORE_CLASS))):
                if mask.any():
                    cls.append(klass[mask].view(-1, 1).to(batch["cls"].dtype))
                    bboxes.append(xyxy2xywh(found[mask, :4] / scale).to(batch["bboxes"].dtype))
                    index.append(torch.full((int(mask.sum()),), float(i), device=images.device,
                                            dtype=batch["batch_idx"].dtype))
            self.counts["pseudo_boxes"] += int(pseudo.sum())
            self.counts["ignore_regions"] += int(ignore.sum())
        self.counts["batches"] += 1
        index = torch.cat(index)
        order = index.argsort(stable=True)  # ultralytics' loss reads each image's rows as one run
        return dict(batch, cls=torch.cat(cls)[order], bboxes=torch.cat(bboxes)[order], batch_idx=index[order])

