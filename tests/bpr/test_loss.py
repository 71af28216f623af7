"""Proofs for Box Prediction Rebalancing: exactness at p = 0, measured fractions, edge cases, E2E heads."""

import pytest
import torch

from bpr.learn.loss import (
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
    original = criterion._anchor_weights

    def spy(*args):
        weight, box_fg = original(*args)
        captured.update(args=args, weight=weight)
        return weight, box_fg

    criterion._anchor_weights = spy
    criterion(model(batch["img"]), batch)
    _, _, pred_pixels, _, gt_bboxes, _, fg_mask, _ = captured["args"]
    dropped = captured["weight"] == 0
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
                                      Rebalancing(p_obj=1.0, p_box=1.0)])
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


def test_a_run_stored_in_the_removed_confident_mode_is_refused_with_the_reason():
    from bpr.config import TrainConfig

    stored = TrainConfig().to_dict()
    stored["rebalancing"]["mode"] = "random"  # as every run stored before the removal carries it
    assert TrainConfig.from_dict(stored) == TrainConfig()
    stored["rebalancing"]["mode"] = "confident"
    with pytest.raises(ValueError, match="confident mode was removed: .* lost 11.8 test mAP50 points"):
        TrainConfig.from_dict(stored)


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


def spy_on_drops(criterion) -> dict:
    """Keep the arguments and the BCE weights of the criterion's next _anchor_weights call."""
    captured = {}
    original = criterion._anchor_weights

    def spy(*args):
        weight, box_fg = original(*args)
        captured.update(args=args, weight=weight, box_fg=box_fg)
        return weight, box_fg

    criterion._anchor_weights = spy
    return captured


@pytest.mark.parametrize("partial", ["img0.jpg", "img1.jpg"])
def test_partial_only_drops_in_the_partial_image_and_nowhere_else(partial):
    """Per image: with p_obj = 1, the partial image loses exactly the negatives it would lose with
    partial_only off, and the fully labeled image loses none."""
    model = tiny_model()
    batch = make_batch(boxes_per_image=(2, 2))
    preds = model(batch["img"])
    dropped = {}
    for partial_only in (True, False):
        criterion = build_criterion(model, Rebalancing(p_obj=1.0, partial_only=partial_only),
                                    partial_images={partial})
        captured = spy_on_drops(criterion)
        criterion(preds, batch)
        dropped[partial_only] = captured["weight"] == 0
    for i in range(2):
        everywhere = dropped[False][i]
        assert everywhere.sum() > 0
        if f"img{i}.jpg" == partial:
            assert torch.equal(dropped[True][i], everywhere)
        else:
            assert dropped[True][i].sum() == 0


def test_the_partial_frames_rule_from_the_store_through_the_export_to_the_drop_mask(demo_project, tmp_path):
    """The store's frame statuses decide the export's partial images, and those decide, per image,
    where the loss drops: a frame marked full loses nothing, its partial neighbour loses every negative."""
    from bpr.data.dataset import export_yolo

    video = demo_project.videos("train")[0]["id"]
    frames = [f["frame_index"] for f in demo_project.labeled_frames(video)]
    full, partial = frames[0], frames[1]
    demo_project.set_frame_status(video, full, "full")
    result = export_yolo(demo_project, tmp_path / "export")
    statuses = {(v["id"], f["frame_index"]): f["label_status"] for v in demo_project.videos("train")
                for f in demo_project.labeled_frames(v["id"])}
    names = {f"{vid}_{frame:07d}.jpg": status for (vid, frame), status in statuses.items()}
    assert sorted(result.partial_images) == sorted(n for n, status in names.items() if status == "partial")
    full_name, partial_name = f"{video}_{full:07d}.jpg", f"{video}_{partial:07d}.jpg"
    assert full_name not in result.partial_images and partial_name in result.partial_images

    model = tiny_model()
    batch = make_batch(boxes_per_image=(2, 2))
    batch["im_file"] = [str(tmp_path / "export" / "train" / "images" / n) for n in (full_name, partial_name)]
    criterion = build_criterion(model, Rebalancing(p_obj=1.0), partial_images=set(result.partial_images))
    captured = spy_on_drops(criterion)
    criterion(model(batch["img"]), batch)
    dropped = captured["weight"] == 0
    assert dropped[0].sum() == 0 and dropped[1].sum() > 0
    assert criterion.stats.negatives == criterion.stats.negatives_dropped == dropped[1].sum()


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.75])
def test_drops_are_candidates_in_the_asked_fraction_over_a_million_anchors(p):
    """About 10^6 candidates: the measured fraction is within 5 binomial sigma of p (0.15 % at p = 0.1,
    so a draw 5 % low fails), and nothing that is not a candidate is ever dropped."""
    g = torch.Generator().manual_seed(11)
    candidates = torch.rand(16, 125_000, generator=g) < 0.5
    drop = choose_drops(candidates, p, torch.Generator().manual_seed(5))
    assert not (drop & ~candidates).any()
    n, k = int(candidates.sum()), int(drop.sum())
    assert n > 900_000
    assert abs(k / n - p) < 5 * (p * (1 - p) / n) ** 0.5, (k / n, p)
    per_image = drop.sum(1) / candidates.sum(1)  # independent per anchor: every image near p too
    assert (per_image - p).abs().max() < 6 * (p * (1 - p) / candidates.sum(1).min()) ** 0.5


def test_neg_iou_is_a_strict_bound_for_negatives_and_low_iou_positives():
    """Hand-made predictions against one 10x10 box: IoU 0.2 is below neg_iou 0.3, exactly 0.3 is not."""
    model = tiny_model()
    criterion = build_criterion(model, Rebalancing(p_obj=1.0, p_box=1.0, neg_iou=0.3))
    gt = torch.tensor([[[0.0, 0, 10, 10]]])
    # anchors: IoU 0.2, 0.3, 0.4 with the box (not foreground); then foreground at IoU 0.2, 0.3, 1.0
    pred = torch.tensor([[[0.0, 0, 10, 2], [0, 0, 10, 3], [0, 0, 10, 4],
                          [0, 0, 10, 2], [0, 0, 10, 3], [0, 0, 10, 10]]])
    fg = torch.tensor([[False, False, False, True, True, True]])
    target = gt.expand(1, 6, 4)
    batch = {"im_file": ["/x/a.jpg"]}
    weight, box_fg = criterion._anchor_weights(batch, 1, pred, torch.full((1, 6, 3), 0.5), gt, target, fg)
    assert (weight == 0).tolist() == [[True, False, False, False, False, False]]
    assert box_fg.tolist() == [[False, False, False, False, True, True]]
    assert criterion.stats.last == {"negatives": 1, "negatives_dropped": 1, "low_iou_positives": 1,
                                    "positives_dropped": 1, "negatives_ignored": 0}


def test_pairwise_iou_against_hand_values():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [5, 5, 15, 15]]])
    gt = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 30, 30]]])
    iou = pairwise_iou(boxes, gt)
    assert iou[0, 0].tolist() == [1.0, 0.0]
    assert iou[0, 1, 0].item() == pytest.approx(25 / 175)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="p_obj"):
        Rebalancing(p_obj=1.5)
    assert not Rebalancing().active and Rebalancing(p_box=0.1).active


def test_the_ignore_band_zeroes_exactly_the_negatives_on_an_ignore_region_by_hand():
    """One 10x10 ignore region; anchors at IoU 0.2, 0.3 (neg_iou: ignored, the bound is inclusive) and 0.5
    with it, and a foreground anchor on it (never ignored). In a fully labeled image, nothing is ignored."""
    model = tiny_model()
    criterion = build_criterion(model, Rebalancing(neg_iou=0.3), partial_images={"a.jpg"})
    region = torch.tensor([[[0.0, 0, 10, 10]]])
    pred = torch.tensor([[[0.0, 0, 10, 2], [0, 0, 10, 3], [0, 0, 10, 5], [0, 0, 10, 10]]])
    fg = torch.tensor([[False, False, False, True]])
    no_labels = torch.zeros(1, 0, 4)
    scores = torch.full((1, 4, 3), 0.5)
    weight, box_fg = criterion._anchor_weights({"im_file": ["/x/a.jpg"]}, 1, pred, scores, no_labels,
                                               region.expand(1, 4, 4), fg, region)
    assert weight.tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert torch.equal(box_fg, fg)
    assert criterion.stats.last["negatives_ignored"] == 2
    weight, _ = criterion._anchor_weights({"im_file": ["/x/full.jpg"]}, 1, pred, scores, no_labels,
                                          region.expand(1, 4, 4), fg, region)
    assert weight.tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_ignore_regions_travel_from_the_batch_to_the_weights():
    """Regions given as the batch gives labels (normalised xywh, an image index each) zero exactly the
    negative anchors whose predicted box overlaps one by neg_iou or more (an IoU written here); the box loss
    is untouched, and the classification loss can only fall."""
    model = tiny_model()
    batch = make_batch(boxes_per_image=(2, 1))
    batch["ignore_bboxes"] = torch.tensor([[0.3, 0.3, 0.4, 0.4], [0.7, 0.6, 0.3, 0.5]])
    batch["ignore_batch_idx"] = torch.tensor([0.0, 1.0])
    criterion = build_criterion(model, Rebalancing(neg_iou=0.1))
    captured = spy_on_drops(criterion)
    preds = model(batch["img"])
    ours = criterion(preds, batch)[0]
    plain = model.init_criterion()(preds, batch)[0]
    _, _, pred_pixels, _, _, _, fg_mask, ignore = captured["args"]
    size = batch["img"].shape[-1]
    regions = {0: [[0.1 * size, 0.1 * size, 0.5 * size, 0.5 * size]], 1: [[0.55 * size, 0.35 * size, 0.85 * size,
                                                                             0.85 * size]]}
    assert torch.allclose(ignore[:, 0], torch.tensor([regions[0][0], regions[1][0]]))
    ignored = captured["weight"] == 0
    for b in range(2):
        for a in range(pred_pixels.shape[1]):
            on_region = _iou(pred_pixels[b, a].tolist(), regions[b][0]) >= 0.1
            assert bool(ignored[b, a]) == (on_region and not fg_mask[b, a]), (b, a)
    assert ignored.sum() == criterion.stats.negatives_ignored > 0
    assert ours[0] == plain[0] and ours[2] == plain[2] and ours[1] < plain[1]


def test_ignore_regions_as_label_rows_of_the_ignore_class_are_taken_out_of_the_labels():
    """How regions travel through ultralytics' augmentation: label rows of IGNORE_CLASS. The loss is the
    same as with the regions given apart, and those rows are never trained on as animals."""
    from bpr.learn.loss import IGNORE_CLASS, split_teacher_rows

    model = tiny_model()
    apart = make_batch(boxes_per_image=(2, 1))
    apart["ignore_bboxes"] = torch.tensor([[0.3, 0.3, 0.4, 0.4], [0.7, 0.6, 0.3, 0.5]])
    apart["ignore_batch_idx"] = torch.tensor([0.0, 1.0])
    rows = dict(apart)
    del rows["ignore_bboxes"], rows["ignore_batch_idx"]
    rows["cls"] = torch.cat((apart["cls"], torch.full((2, 1), float(IGNORE_CLASS))))
    rows["bboxes"] = torch.cat((apart["bboxes"], apart["ignore_bboxes"]))
    rows["batch_idx"] = torch.cat((apart["batch_idx"], apart["ignore_batch_idx"]))

    split = split_teacher_rows(rows)
    assert torch.equal(split["cls"], apart["cls"]) and torch.equal(split["bboxes"], apart["bboxes"])
    assert torch.equal(split["ignore_bboxes"], apart["ignore_bboxes"])
    assert split_teacher_rows(apart) is apart  # no rows of the class: the batch as it was

    criterion = build_criterion(model, Rebalancing(neg_iou=0.1))
    preds = model(apart["img"])
    assert torch.equal(criterion(preds, apart)[0], criterion(preds, rows)[0])
    assert criterion.stats.last["negatives_ignored"] > 0


def test_a_weighted_pseudo_box_class_holds_its_species_and_score():
    from bpr.learn.loss import read_weighted_class, weighted_class

    species = torch.arange(1000, dtype=torch.float32).repeat_interleave(11)
    scores = torch.linspace(0, 1, 11).repeat(1000)
    cls = weighted_class(species, scores).to(torch.float32)  # as ultralytics keeps classes
    back, weight = read_weighted_class(torch.cat((cls, torch.tensor([0.0, 2.0, -1.0]))))
    assert torch.equal(back[:-3], species) and torch.allclose(weight[:-3], scores, atol=3e-4)
    # a label (weight 1) and an ignore region are read as they are
    assert back[-3:].tolist() == [0.0, 2.0, -1.0] and weight[-3:].tolist() == [1.0, 1.0, 1.0]


def test_a_weighted_pseudo_box_counts_as_its_score_in_the_loss():
    """The anchors assigned to a pseudo-box weighted w: each of the three losses is the one at w = 0 plus
    w times what the box adds at w = 1, and w = 1 is the plain label bit for bit."""
    from bpr.learn.loss import weighted_class

    model = tiny_model()
    plain = make_batch(boxes_per_image=(2, 1))
    criterion = build_criterion(model, Rebalancing())
    preds = model(plain["img"])

    def loss(w):
        batch = dict(plain, cls=plain["cls"].clone())
        batch["cls"][-1] = weighted_class(batch["cls"][-1], w)  # image 1's box is a pseudo-box
        return criterion(preds, batch)[0].detach()

    assert torch.equal(loss(1.0), criterion(preds, plain)[0].detach())
    none, full = loss(0.0), loss(1.0)
    assert (none < full).all()  # box, classification and DFL each lose the pseudo-box's share
    for w in (0.25, 0.5, 0.8):
        assert torch.allclose(loss(w), none + w * (full - none), rtol=1e-4)
