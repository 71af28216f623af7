"""Proofs for Box Prediction Rebalancing: exactness at p = 0, measured fractions, edge cases, E2E heads."""

import pytest
import torch

from bpr.loss import (
    DropStats,
    Rebalancing,
    RebalancedDetectionLoss,
    build_criterion,
    choose_drops,
    criterion_stats,
    pairwise_iou,
)


def tiny_model(yaml="yolov5n.yaml", nc=3, seed=0):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(yaml, nc=nc, verbose=False)
    model.args = get_cfg()
    model.train()
    return model


def make_batch(boxes_per_image=(3, 0, 2, 5), size=128, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = len(boxes_per_image)
    img = torch.rand(n, 3, size, size, generator=g)
    idx, cls, bboxes = [], [], []
    for i, k in enumerate(boxes_per_image):
        for _ in range(k):
            cx, cy = torch.rand(2, generator=g) * 0.6 + 0.2
            w, h = torch.rand(2, generator=g) * 0.25 + 0.05
            idx.append(i)
            cls.append(int(torch.randint(0, 3, (1,), generator=g)))
            bboxes.append([cx, cy, w, h])
    return {"img": img, "batch_idx": torch.tensor(idx, dtype=torch.float32),
            "cls": torch.tensor(cls, dtype=torch.float32).view(-1, 1),
            "bboxes": torch.tensor(bboxes, dtype=torch.float32).view(-1, 4),
            "im_file": [f"/x/images/img{i}.jpg" for i in range(n)]}


def loss_and_grads(model, criterion, batch):
    model.zero_grad()
    preds = model(batch["img"])
    loss, items = criterion(preds, batch)
    loss.sum().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("yaml", ["yolov5n.yaml", "yolo11n.yaml", "yolo26n.yaml"])
def test_no_drop_is_exactly_ultralytics_loss(yaml):
    """p_obj = p_box = 0 through BPR's own code path: same values, same gradients, bit for bit."""
    model = tiny_model(yaml)
    batch = make_batch()
    reference = model.init_criterion()
    ours = build_criterion(model, Rebalancing())
    ref_loss, ref_grads = loss_and_grads(model, reference, batch)
    our_loss, our_grads = loss_and_grads(model, ours, batch)
    assert torch.equal(ref_loss, our_loss)
    assert ref_grads.keys() == our_grads.keys()
    for name in ref_grads:
        assert torch.equal(ref_grads[name], our_grads[name]), name


def test_the_drop_changes_the_loss_only_when_training():
    model = tiny_model()
    batch = make_batch()
    ours = build_criterion(model, Rebalancing(p_obj=0.9, p_box=0.9))
    plain = model.init_criterion()
    with torch.no_grad():
        preds = model(batch["img"])
        assert torch.equal(ours(preds, batch)[0], plain(preds, batch)[0])  # validation stays plain
    preds = model(batch["img"])
    assert ours(preds, batch)[0][1] < plain(preds, batch)[0][1]


def test_measured_drop_fraction_matches_p_within_binomial_tolerance():
    model = tiny_model()
    batch = make_batch(size=160)
    for p in (0.1, 0.5, 0.75):
        stats = DropStats()
        criterion = build_criterion(model, Rebalancing(p_obj=p, seed=3), stats)
        preds = model(batch["img"])
        criterion(preds, batch)
        n, k = stats.negatives, stats.negatives_dropped
        assert n > 1000
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(k - n * p) < 5 * sigma, (p, n, k)
        assert stats.summary()["obj_drop_fraction"] == pytest.approx(k / n)


def test_p_one_drops_every_negative_and_only_negatives_are_dropped():
    """Negatives: not foreground and IoU < neg_iou with every box of the image (independent IoU)."""
    model = tiny_model()
    batch = make_batch(boxes_per_image=(4, 1))
    criterion = build_criterion(model, Rebalancing(p_obj=1.0, neg_iou=0.3))
    captured = {}
    original = criterion._drop_masks

    def spy(*args):
        keep, box_fg = original(*args)
        captured.update(args=args, keep=keep)
        return keep, box_fg

    criterion._drop_masks = spy
    criterion(model(batch["img"]), batch)
    _, _, pred_pixels, _, gt_bboxes, _, fg_mask = captured["args"]
    dropped = ~captured["keep"]
    for b in range(pred_pixels.shape[0]):
        gts = gt_bboxes[b][gt_bboxes[b].sum(-1) > 0]  # drop the padding rows
        for a in range(pred_pixels.shape[1]):
            box = pred_pixels[b, a].tolist()
            ious = [_iou(box, g.tolist()) for g in gts]
            is_negative = not fg_mask[b, a] and all(i < 0.3 for i in ious)
            assert bool(dropped[b, a]) == is_negative, (b, a, ious)
    assert criterion.stats.negatives == criterion.stats.negatives_dropped > 0


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("boxes", [(0, 0), (0,)])
@pytest.mark.parametrize("settings", [Rebalancing(), Rebalancing(p_obj=0.75, p_box=0.25),
                                      Rebalancing(p_obj=1.0, p_box=1.0, mode="confident")])
def test_images_without_boxes(boxes, settings):
    """No boxes (or every box hidden): finite loss, box loss exactly 0, every anchor a negative."""
    model = tiny_model()
    batch = make_batch(boxes_per_image=boxes)
    stats = DropStats()
    loss, _ = build_criterion(model, settings, stats)(model(batch["img"]), batch)
    assert torch.isfinite(loss).all()
    assert loss[0] == 0 and loss[2] == 0
    if settings.p_obj:
        anchors = sum((128 // s) ** 2 for s in (8, 16, 32)) * len(boxes)
        assert stats.negatives == anchors
    if settings.p_obj == 1.0:
        assert loss[1] == 0


def test_box_drop_removes_low_iou_positives_from_the_box_loss():
    model = tiny_model()
    batch = make_batch()
    stats = DropStats()
    plain = model.init_criterion()(model(batch["img"]), batch)[0]
    dropped = build_criterion(model, Rebalancing(p_box=1.0), stats)(model(batch["img"]), batch)[0]
    assert stats.low_iou_positives > 0 and stats.positives_dropped == stats.low_iou_positives
    assert dropped[1] == plain[1]          # classification untouched
    assert dropped[0] < plain[0]           # an untrained model's positives are mostly low-IoU


def test_confident_mode_drops_the_highest_scoring_negatives_first():
    candidates = torch.tensor([[True, True, False, True, True], [False, True, True, True, False]])
    scores = torch.tensor([[0.1, 0.9, 0.99, 0.5, 0.3], [0.9, 0.2, 0.8, 0.4, 0.1]])
    drop = choose_drops(candidates, 0.5, "confident", scores, torch.Generator())
    # image 0: 4 candidates -> drop 2: scores 0.9 and 0.5 (0.99 is not a candidate)
    # image 1: 3 candidates -> drop round(1.5) = 2: scores 0.8 and 0.4
    assert drop.tolist() == [[False, True, False, True, False], [False, False, True, True, False]]


def test_seeded_runs_are_reproducible():
    model = tiny_model()
    batch = make_batch()
    preds = model(batch["img"])

    def run(seed):
        stats = DropStats()
        criterion = build_criterion(model, Rebalancing(p_obj=0.5, p_box=0.5, seed=seed), stats)
        return criterion(preds, batch)[0].detach(), stats.last

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert not torch.equal(a[0], c[0])


def test_end_to_end_head_applies_the_drop_in_both_branches():
    from ultralytics.utils.loss import E2ELoss

    model = tiny_model("yolo26n.yaml")
    batch = make_batch()
    criterion = build_criterion(model, Rebalancing(p_obj=0.75))
    assert isinstance(criterion, E2ELoss)
    assert isinstance(criterion.one2many, RebalancedDetectionLoss)
    assert isinstance(criterion.one2one, RebalancedDetectionLoss)
    plain = model.init_criterion()(model(batch["img"]), batch)[0]
    ours = criterion(model(batch["img"]), batch)[0]
    stats = criterion_stats(criterion)
    assert stats.negatives_dropped > 0 and stats.steps == 2  # one per branch
    assert ours[1] < plain[1]


def test_partial_only_spares_fully_labeled_images():
    model = tiny_model()
    batch = make_batch(boxes_per_image=(2, 2))
    stats = DropStats()
    criterion = build_criterion(model, Rebalancing(p_obj=1.0, partial_only=True), stats,
                                partial_images={"img0.jpg"})
    criterion(model(batch["img"]), batch)
    only_first = stats.negatives
    stats_all = DropStats()
    build_criterion(model, Rebalancing(p_obj=1.0, partial_only=False), stats_all,
                    partial_images={"img0.jpg"})(model(batch["img"]), batch)
    assert 0 < only_first < stats_all.negatives


def test_pairwise_iou_against_hand_values():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [5, 5, 15, 15]]])
    gt = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 30, 30]]])
    iou = pairwise_iou(boxes, gt)
    assert iou[0, 0].tolist() == [1.0, 0.0]
    assert iou[0, 1, 0].item() == pytest.approx(25 / 175)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="p_obj"):
        Rebalancing(p_obj=1.5)
    with pytest.raises(ValueError, match="mode"):
        Rebalancing(mode="greedy")
    assert not Rebalancing().active and Rebalancing(p_box=0.1).active
