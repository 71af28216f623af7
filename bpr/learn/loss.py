"""Box Prediction Rebalancing (Haque & McEver) on top of ultralytics' detection loss.

In partially labeled training frames, some animals have no box. The detector's classification BCE is
computed over *every* anchor, and an anchor on an unboxed animal is taught "background" with the full
weight of a true negative. BPR removes a random fraction of the negative predictions from the loss:

- ``p_obj``: an anchor is *negative* when it is not assigned to a ground-truth box (not foreground)
  and its decoded predicted box has IoU < ``neg_iou`` with every ground-truth box of its image (in an
  image with no boxes, every anchor is negative). A fraction ``p_obj`` of the negatives is removed from
  the classification BCE (all classes of the anchor). Ultralytics heads have no separate objectness
  output: the per-class scores carry it, so this is the paper's objectness drop.
- ``p_box``: a foreground anchor whose predicted box has IoU < ``neg_iou`` with its assigned target is
  a low-IoU positive; a fraction ``p_box`` of those is removed from the box loss (IoU term and DFL/L1).

- the **ignore band**: a negative anchor whose predicted box overlaps (IoU >= ``neg_iou``) one of its
  image's *ignore regions* (boxes a teacher model scored too low to call an animal and too high to call
  background) is neither punished nor rewarded: weight 0 in the classification BCE. Ignore regions
  travel through ultralytics' augmentation as label rows of class IGNORE_CLASS, which the loss takes
  out of the labels (``batch["ignore_bboxes"]`` and ``batch["ignore_batch_idx"]`` may also give them).

- a **weighted pseudo-box** (a teacher's detection trained on as an animal, ``weight_by_score``)
  counts as its teacher score of a label: the classification BCE and the box loss of the anchors
  assigned to it are scaled by that score. It travels as a label row of a class below IGNORE_CLASS
  that holds its species and its score (weighted_class), which the loss reads back.

All act through one per-anchor weight on the classification BCE (0 for what they leave out). The loss
normaliser (sum of target scores) is unchanged, so ``p_obj = p_box = 0`` with no ignore regions and no
weighted pseudo-boxes gives exactly ultralytics' loss. The dropped negatives are drawn uniformly with a
seeded generator of its own (the paper). Dropping happens only when gradients are on, so validation
losses stay plain.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from bpr.config import Rebalancing  # noqa: F401  (re-exported: the loss's settings)
from bpr.offline import configure

configure()  # before ultralytics is imported: no network at import time
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss  # noqa: E402
from ultralytics.utils.tal import make_anchors  # noqa: E402

# A label row of this class is an ignore region, not an animal (bpr.learn.pseudo writes them).
IGNORE_CLASS = -1
# A label row of a class at or below this is a weighted pseudo-box (weighted_class).
WEIGHTED_BASE = -2


def weighted_class(species, score):
    """The class a weighted pseudo-box travels as: its species and its score (0..1) in one number, so that
    they ride through ultralytics' augmentation with the box as a plain class would:
    ``WEIGHTED_BASE - species - (1 - score) / 2`` (in float32, up to 1000 species: the species exactly,
    the score within 3e-4)."""
    return WEIGHTED_BASE - species - (1 - score) / 2


def is_weighted(cls: torch.Tensor) -> torch.Tensor:
    """Which label rows are weighted pseudo-boxes (their class at or below WEIGHTED_BASE, to rounding)."""
    return cls < WEIGHTED_BASE + 0.5


def read_weighted_class(cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(species, weight) of label rows; a row above WEIGHTED_BASE is a label, of weight 1."""
    rest = WEIGHTED_BASE - cls
    weighted = is_weighted(cls)
    species = torch.where(weighted, torch.floor(rest + 1e-3), cls)
    weight = torch.where(weighted, 1 - 2 * (rest - species), torch.ones_like(cls)).clamp(0, 1)
    return species, weight


def split_teacher_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch with its label rows of IGNORE_CLASS moved to ``ignore_bboxes``/``ignore_batch_idx``
    (after any given there), and its weighted pseudo-boxes read back into their species with each row's
    weight in ``label_weight``; the batch itself when it has neither."""
    cls = batch.get("cls")
    if cls is None or not len(cls):
        return batch
    if bool(is_weighted(cls).any()):
        species, weight = read_weighted_class(cls)
        batch = dict(batch, cls=species, label_weight=weight)
        cls = species
    ignore = cls.view(-1) == IGNORE_CLASS
    if not bool(ignore.any()):
        return batch
    keep = ~ignore
    out = dict(batch, cls=cls[keep], bboxes=batch["bboxes"][keep], batch_idx=batch["batch_idx"][keep])
    if "label_weight" in batch:
        out["label_weight"] = batch["label_weight"][keep]
    boxes, index = batch["bboxes"][ignore], batch["batch_idx"][ignore]
    if batch.get("ignore_bboxes") is not None and len(batch["ignore_bboxes"]):
        boxes = torch.cat((batch["ignore_bboxes"].to(boxes), boxes))
        index = torch.cat((batch["ignore_batch_idx"].to(index).view(-1), index.view(-1)))
    order = index.view(-1).argsort(stable=True)  # ultralytics' preprocess reads each image's rows as one run
    out["ignore_bboxes"], out["ignore_batch_idx"] = boxes[order], index.view(-1)[order]
    return out

class DropStats:
    """Counts of what BPR saw and dropped: for the last step, and summed since the last reset.

    Counts stay on the loss's device as tensors until read, so recording them costs no GPU sync.
    """

    FIELDS = ("negatives", "negatives_dropped", "low_iou_positives", "positives_dropped", "negatives_ignored")

    def __init__(self):
        self._total: torch.Tensor | None = None
        self._last: torch.Tensor | None = None
        self.steps = 0

    def add(self, counts: torch.Tensor) -> None:
        """counts: (len(FIELDS),) integer tensor in the order of FIELDS."""
        self._last = counts
        self._total = counts.clone() if self._total is None else self._total + counts
        self.steps += 1

    def _read(self, counts: torch.Tensor | None) -> dict[str, int]:
        values = [0] * len(self.FIELDS) if counts is None else counts.tolist()
        return dict(zip(self.FIELDS, values))

    @property
    def last(self) -> dict[str, int]:
        return self._read(self._last)

    def __getattr__(self, name: str) -> int:
        if name in DropStats.FIELDS:
            return self._read(self._total)[name]
        raise AttributeError(name)

    def summary(self) -> dict[str, Any]:
        """Totals and measured fractions (None where there was nothing to drop)."""
        out: dict[str, Any] = self._read(self._total)
        out["steps"] = self.steps
        out["obj_drop_fraction"] = (out["negatives_dropped"] / out["negatives"]) if out["negatives"] else None
        out["box_drop_fraction"] = (out["positives_dropped"] / out["low_iou_positives"]
                                    if out["low_iou_positives"] else None)
        return out

    def reset(self) -> None:
        self._total = self._last = None
        self.steps = 0

    def sum_over_ranks(self, device) -> None:
        """Sum the totals and steps over the ranks of a DDP run, each of which saw its share of the batches."""
        import torch.distributed as dist

        total = self._total if self._total is not None else torch.zeros(len(self.FIELDS), dtype=torch.long)
        both = torch.cat((total.to(device=device, dtype=torch.long),
                          torch.tensor([self.steps], dtype=torch.long, device=device)))
        dist.all_reduce(both)
        self._total, self.steps = both[:-1], int(both[-1])


def pairwise_iou(boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of every box with every ground-truth box, per image.

    boxes: (B, A, 4) xyxy; gt: (B, M, 4) xyxy. Returns (B, A, M). All-zero (padding) gt rows give 0.
    """
    a, g = boxes[:, :, None, :], gt[:, None, :, :]
    w = (torch.minimum(a[..., 2], g[..., 2]) - torch.maximum(a[..., 0], g[..., 0])).clamp_(min=0)
    h = (torch.minimum(a[..., 3], g[..., 3]) - torch.maximum(a[..., 1], g[..., 1])).clamp_(min=0)
    inter = w.mul_(h)
    area_a = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    area_g = (gt[..., 2] - gt[..., 0]).clamp(min=0) * (gt[..., 3] - gt[..., 1]).clamp(min=0)
    union = (area_a[:, :, None] + area_g[:, None, :]).sub_(inter).clamp_(min=1e-9)
    return inter.div_(union)


def choose_drops(candidates: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Which candidates to drop: each independently with probability ``fraction``.

    candidates: (B, A) bool, the anchors that may be dropped. Returns (B, A) bool, a subset of them.
    """
    if fraction <= 0:
        return torch.zeros_like(candidates)
    if fraction >= 1:
        return candidates.clone()
    draw = torch.rand(candidates.shape, generator=generator, device=generator.device)
    return candidates & (draw.to(candidates.device) < fraction)


class RebalancedDetectionLoss(v8DetectionLoss):
    """ultralytics' v8DetectionLoss (YOLOv5u, YOLOv8, YOLO11 heads) with BPR's drops.

    ``partial_images``: file names of the training images whose frame is partially labeled; with
    ``settings.partial_only`` the drops apply only to those (``batch["im_file"]`` names each image; in a
    mosaic, the tile that leads it). ``stats`` receives the counts of every step.
    """

    def __init__(self, model, settings: Rebalancing, stats: DropStats | None = None,
                 partial_images: set[str] | None = None, tal_topk: int = 10,
                 tal_topk2: int | None = None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.settings = settings
        self.stats = stats if stats is not None else DropStats()
        self.partial_images = partial_images
        # Its own generator, so BPR's draws neither disturb nor depend on the augmentation's RNG.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(settings.seed)

    def _applies_to(self, batch: dict[str, Any], batch_size: int) -> torch.Tensor:
        """(B,) bool: the images of the batch in which dropping applies."""
        if not self.settings.partial_only or self.partial_images is None or "im_file" not in batch:
            return torch.ones(batch_size, dtype=torch.bool, device=self.device)
        names = [str(f).replace("\\", "/").rsplit("/", 1)[-1] for f in batch["im_file"]]
        return torch.tensor([n in self.partial_images for n in names], device=self.device)

    def get_assigned_targets_and_loss(self, preds: dict[str, torch.Tensor], batch: dict[str, Any],
                                      **assign_kwargs) -> tuple:
        batch = split_teacher_rows(batch)
        if not torch.is_grad_enabled():
            return super().get_assigned_targets_and_loss(preds, batch, **assign_kwargs)
        # The same computation as v8DetectionLoss.get_assigned_targets_and_loss (ultralytics 8.4),
        # with a per-anchor weight on the BCE (`weight`), a mask on the box loss (`box_fg`) and the
        # weighted pseudo-boxes' scores on both.
        loss = torch.zeros(3, device=self.device)
        pred_distri = preds["boxes"].permute(0, 2, 1).contiguous()
        pred_scores = preds["scores"].permute(0, 2, 1).contiguous()
        anchor_points, stride_tensor = make_anchors(preds["feats"], self.stride, 0.5)
        dtype = pred_scores.dtype
        batch_size = pred_scores.shape[0]
        imgsz = torch.tensor(preds["feats"][0].shape[2:], device=self.device, dtype=dtype) * self.stride[0]

        columns = [batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]]
        weighted = "label_weight" in batch
        if weighted:
            columns.append(batch["label_weight"].view(-1, 1))
        targets = self.preprocess(torch.cat(columns, 1).to(self.device), batch_size,
                                  scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes, gt_weight = targets.split((1, 4, int(weighted)), 2)
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        pred_bboxes = self.bbox_decode(anchor_points, pred_distri)
        pred_pixels = (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype)
        pred_sigmoid = pred_scores.detach().sigmoid()

        _, target_bboxes, target_scores, fg_mask, target_gt_idx = self.assigner(
            pred_sigmoid, pred_pixels, anchor_points * stride_tensor, gt_labels, gt_bboxes, mask_gt,
            **assign_kwargs)
        target_scores_sum = target_scores.sum().clamp_(min=1)

        ignore = self._ignore_regions(batch, batch_size, imgsz)
        weight, box_fg = self._anchor_weights(batch, batch_size, pred_pixels, pred_sigmoid, gt_bboxes,
                                              target_bboxes, fg_mask, ignore)

        box_scores = target_scores
        if weighted:  # an anchor assigned to a weighted pseudo-box counts as its score
            scored = torch.where(fg_mask, gt_weight[..., 0].gather(1, target_gt_idx), 1.0)
            weight = scored if weight is None else weight * scored
            box_scores = target_scores * scored[..., None].to(target_scores.dtype)

        bce_loss = self.bce(pred_scores, target_scores.to(dtype))
        if self.class_weights is not None:
            bce_loss *= self.class_weights
        if weight is not None:
            bce_loss = bce_loss * weight[..., None].to(bce_loss.dtype)
        loss[1] = bce_loss.sum() / target_scores_sum

        loss[0], loss[2] = self.bbox_loss(
            pred_distri, pred_bboxes, anchor_points, target_bboxes / stride_tensor, box_scores,
            target_scores_sum, box_fg, imgsz, stride_tensor)
        loss[0] *= self.hyp.box
        loss[1] *= self.hyp.cls
        loss[2] *= self.hyp.dfl
        return ((fg_mask, target_gt_idx, target_bboxes, anchor_points, stride_tensor), loss,
                dict(zip(self.loss_names, loss.detach())))

    def _ignore_regions(self, batch: dict[str, Any], batch_size: int, imgsz: torch.Tensor) -> torch.Tensor | None:
        """(B, M, 4) xyxy pixels of each image's ignore regions (zero rows pad), or None when the batch has none."""
        boxes = batch.get("ignore_bboxes")
        if boxes is None or not len(boxes):
            return None
        regions = torch.cat((batch["ignore_batch_idx"].view(-1, 1), torch.zeros_like(boxes[:, :1]), boxes), 1)
        return self.preprocess(regions.to(self.device), batch_size, scale_tensor=imgsz[[1, 0, 1, 0]])[..., 1:]

    @torch.no_grad()
    def _anchor_weights(self, batch, batch_size, pred_pixels, pred_sigmoid, gt_bboxes, target_bboxes,
                        fg_mask, ignore=None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B, A) weight of each anchor in the classification BCE, or None where every weight is 1; and the
        (B, A) foreground mask of the box loss. BPR's drop and the ignore band give 0 to what they leave out.

        pred_pixels (B, A, 4) and gt_bboxes (B, M, 4) are xyxy pixels; fg_mask (B, A) bool; ignore (B, K, 4)
        xyxy pixels, or None.
        """
        s = self.settings
        if not s.active and ignore is None:
            return None, fg_mask
        applies = self._applies_to(batch, batch_size)[:, None]          # (B, 1)

        counts = torch.zeros(len(DropStats.FIELDS), dtype=torch.long, device=fg_mask.device)
        keep = torch.ones_like(fg_mask)
        if s.p_obj > 0:
            if gt_bboxes.shape[1]:
                # Padding rows of gt_bboxes are all zeros and give IoU 0: no mask needed.
                best = pairwise_iou(pred_pixels, gt_bboxes).amax(-1)       # (B, A)
            else:
                best = torch.zeros_like(fg_mask, dtype=pred_pixels.dtype)
            candidates = ~fg_mask & (best < s.neg_iou) & applies
            drop = choose_drops(candidates, s.p_obj, self.generator)
            keep &= ~drop
            counts[0], counts[1] = candidates.sum(), drop.sum()

        box_fg = fg_mask
        if s.p_box > 0:
            iou = _aligned_iou(pred_pixels, target_bboxes)                 # (B, A)
            candidates = fg_mask & (iou < s.neg_iou) & applies
            drop = choose_drops(candidates, s.p_box, self.generator)
            box_fg = fg_mask & ~drop
            counts[2], counts[3] = candidates.sum(), drop.sum()

        if ignore is not None:
            # zero padding rows give IoU 0, under any neg_iou above 0
            ignored = ~fg_mask & applies & (pairwise_iou(pred_pixels, ignore).amax(-1) >= s.neg_iou) & keep
            keep &= ~ignored
            counts[4] = ignored.sum()
        self.stats.add(counts)
        weighted = s.p_obj > 0 or ignore is not None  # else every weight is 1: the BCE stays as it is
        return (keep.to(pred_pixels.dtype) if weighted else None), box_fg


def _aligned_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a[i] with b[i] for boxes (..., 4) in xyxy."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def build_criterion(model, settings: Rebalancing, stats: DropStats | None = None,
                    partial_images: set[str] | None = None):
    """The criterion to install on a plain ultralytics DetectionModel (``model.criterion = ...``).

    End-to-end heads (YOLO26, YOLOv10) train through E2ELoss's two branches; both get BPR, so the
    drop is never silently bypassed.
    """
    stats = stats if stats is not None else DropStats()
    loss_fn = functools.partial(RebalancedDetectionLoss, settings=settings, stats=stats,
                                partial_images=partial_images)
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return E2ELoss(model, loss_fn=loss_fn)
    return loss_fn(model)


def criterion_stats(criterion) -> DropStats | None:
    """The DropStats a criterion built by :func:`build_criterion` reports to, else None."""
    if isinstance(criterion, RebalancedDetectionLoss):
        return criterion.stats
    if isinstance(criterion, E2ELoss) and isinstance(criterion.one2many, RebalancedDetectionLoss):
        return criterion.one2many.stats
    return None
