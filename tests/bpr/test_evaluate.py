"""mAP: cases worked out by hand, and the COCO figure against pycocotools on the same predictions."""

import contextlib
import io

import numpy as np
import pytest

from bpr.results.evaluate import ImageResult, box_iou, coco_ap, precision_recall_at, summarise


def image(gt, gt_cls, det=(), scores=(), det_cls=()):
    return ImageResult(np.array(gt, float).reshape(-1, 4), np.array(gt_cls, int),
                       np.array(det, float).reshape(-1, 4), np.array(scores, float), np.array(det_cls, int))


def test_perfect_predictions_score_one_both_ways():
    images = [image([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1], [[0, 0, 10, 10], [20, 20, 40, 40]],
                    [0.9, 0.8], [0, 1])]
    result = summarise(images, {0: "urchin", 1: "star"})
    assert result["coco"] == {"mAP50": pytest.approx(1.0), "mAP50-95": pytest.approx(1.0)}
    assert result["ultralytics"]["mAP50"] == pytest.approx(1.0, abs=0.01)
    assert (result["precision"], result["recall"]) == (1.0, 1.0)


def test_half_recall_with_a_false_positive():
    """2 boxes, 1 found (score 0.9), then a false positive (0.8). P/R: (1, .5), (.5, .5).
    COCO reads the envelope at 101 recall points: 1 up to recall .5 (51 points), then 0."""
    images = [image([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [[0, 0, 10, 10], [80, 80, 90, 90]],
                    [0.9, 0.8], [0, 0])]
    ap = coco_ap(images, [0])
    assert ap[0, 0] == pytest.approx(51 / 101)
    assert precision_recall_at(images, conf=0.85) == (1.0, 0.5)
    assert precision_recall_at(images, conf=0.5) == (0.5, 0.5)


def test_localisation_decides_the_iou_threshold():
    """A box with IoU 0.6 counts at 0.50, 0.55, 0.60 and not above: mAP50-95 = 3/10 (COCO)."""
    gt = [[0, 0, 10, 10]]
    det = [[0, 0, 10, 6]]  # IoU 0.6
    assert box_iou(np.array(det, float), np.array(gt, float))[0, 0] == pytest.approx(0.6)
    ap = coco_ap([image(gt, [0], det, [0.9], [0])], [0])
    assert ap[:, 0] == pytest.approx([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])


def test_precision_recall_counts_a_hit_from_iou_0_5_up():
    """One detection at IoU exactly 0.5 (a hit), one at IoU 0.4 (a miss) and a third, on no box."""
    gt = [[0, 0, 10, 10]]
    at_half, at_0_4 = [0, 0, 10, 5], [0, 0, 10, 4]
    assert box_iou(np.array([at_half, at_0_4], float), np.array(gt, float))[:, 0].tolist() == [0.5, 0.4]
    images = [image(gt, [0], [at_half], [0.9], [0]), image(gt, [0], [at_0_4], [0.8], [0]),
              image([], [], [[50, 50, 60, 60]], [0.7], [0])]
    assert precision_recall_at(images, conf=0.5) == (pytest.approx(1 / 3), 0.5)
    assert precision_recall_at(images, conf=0.85) == (1.0, 0.5)
    assert precision_recall_at(images, conf=0.5, iou=0.4) == (pytest.approx(2 / 3), 1.0)
    assert summarise(images, {0: "urchin"}, conf=0.5)["precision"] == pytest.approx(1 / 3)


def test_map50_95_and_the_per_class_figures_by_hand():
    """Class 0 found exactly; class 1 found at IoU 0.6, which counts at 0.50, 0.55 and 0.60 only, so its
    AP50-95 is 3/10 (COCO). ultralytics' interpolation gives a single true positive 0.995 at each
    threshold where it counts."""
    images = [image([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1], [[0, 0, 10, 10], [20, 20, 30, 26]],
                    [0.9, 0.8], [0, 1])]
    result = summarise(images, {0: "urchin", 1: "star"})
    assert result["coco"] == {"mAP50": pytest.approx(1.0), "mAP50-95": pytest.approx((1 + 0.3) / 2)}
    assert result["ultralytics"]["mAP50"] == pytest.approx(0.995, abs=1e-3)
    assert result["ultralytics"]["mAP50-95"] == pytest.approx(0.995 * (1 + 0.3) / 2, abs=1e-3)
    urchin, star = result["per_class"]
    assert (urchin["name"], urchin["boxes"], star["name"], star["boxes"]) == ("urchin", 1, "star", 1)
    assert urchin["coco_mAP50"] == star["coco_mAP50"] == pytest.approx(1.0)
    assert (urchin["coco_mAP50-95"], star["coco_mAP50-95"]) == (pytest.approx(1.0), pytest.approx(0.3))
    assert urchin["ultralytics_mAP50"] == star["ultralytics_mAP50"] == pytest.approx(0.995, abs=1e-3)
    assert urchin["ultralytics_mAP50-95"] == pytest.approx(0.995, abs=1e-3)
    assert star["ultralytics_mAP50-95"] == pytest.approx(0.995 * 0.3, abs=1e-3)


def test_classes_without_ground_truth_are_left_out():
    images = [image([[0, 0, 10, 10]], [0], [[0, 0, 10, 10], [30, 30, 40, 40]], [0.9, 0.9], [0, 1])]
    ap = coco_ap(images, [0, 1])
    assert ap[0] == pytest.approx([1.0, -1.0])
    assert summarise(images, {0: "a", 1: "b"})["coco"]["mAP50"] == pytest.approx(1.0)


def random_dataset(seed, n_images=25, n_classes=3):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        n = rng.integers(0, 8)
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(10, 120, (n, 2))
        gt = np.c_[xy, xy + wh]
        gt_cls = rng.integers(0, n_classes, n)
        keep = rng.random(n) < 0.8  # missed boxes
        jitter = rng.normal(0, 8, (n, 4))
        det = (gt + jitter)[keep]
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        det_cls = np.where(rng.random(keep.sum()) < 0.9, gt_cls[keep], rng.integers(0, n_classes, keep.sum()))
        k = rng.integers(0, 5)  # false positives
        fxy = rng.uniform(0, 500, (k, 2))
        det = np.r_[det, np.c_[fxy, fxy + rng.uniform(10, 80, (k, 2))]]
        det_cls = np.r_[det_cls, rng.integers(0, n_classes, k)]
        scores = rng.random(len(det)).round(3)  # ties happen, as with real detectors' rounded scores
        images.append(ImageResult(gt, gt_cls, det, scores, det_cls.astype(int)))
    return images


def pycocotools_map(images, n_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(n_classes)]}
    dets = []
    for i, im in enumerate(images):
        gt["images"].append({"id": i})
        for box, c in zip(im.gt_boxes, im.gt_classes):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c),
                                      "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, s, c in zip(im.boxes, im.scores, im.classes):
            dets.append({"image_id": i, "category_id": int(c), "score": float(s),
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(dets), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class) at all areas, 100 dets
    per_class = {}
    for c in range(n_classes):
        p = precision[:, :, c]
        if (p > -1).any():
            per_class[c] = (float(p[0][p[0] > -1].mean()), float(p[p > -1].mean()))
    return evaluation.stats[1], evaluation.stats[0], per_class


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coco_figure_agrees_with_pycocotools(seed):
    images = random_dataset(seed)
    expected50, expected, per_class = pycocotools_map(images, 3)
    result = summarise(images, {0: "a", 1: "b", 2: "c"})
    assert result["coco"]["mAP50"] == pytest.approx(expected50, abs=1e-3)
    assert result["coco"]["mAP50-95"] == pytest.approx(expected, abs=1e-3)
    assert {row["class"] for row in result["per_class"] if row["boxes"]} == set(per_class)
    for row in result["per_class"]:
        if row["boxes"]:
            assert (row["coco_mAP50"], row["coco_mAP50-95"]) == pytest.approx(per_class[row["class"]], abs=1e-3)
            # ultralytics per class: the same predictions, its own interpolation
            assert row["ultralytics_mAP50"] == pytest.approx(row["coco_mAP50"], abs=0.05)
            assert row["ultralytics_mAP50-95"] == pytest.approx(row["coco_mAP50-95"], abs=0.05)
    # The two ways differ, but only by interpolation: within a few points on the same predictions.
    assert result["ultralytics"]["mAP50"] == pytest.approx(expected50, abs=0.03)


def test_the_f1_best_threshold_and_the_counting_error_by_hand():
    """Frame a: hits at 0.9 and 0.2, a false detection at 0.8, 2 labels; frame b: a hit at 0.6, 1 label.
    F1 from the top: 2/(1+3) = 0.5, 2/(2+3) = 0.4, 4/(3+3) = 0.67, 6/(4+3) = 0.86 -> threshold 0.2."""
    from bpr.results.evaluate import ImageResult, count_mae, f1_best_conf

    a = ImageResult(gt_boxes=np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), gt_classes=np.array([0, 0]),
                    boxes=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float),
                    scores=np.array([0.9, 0.8, 0.2]), classes=np.array([0, 0, 0]))
    b = ImageResult(gt_boxes=np.array([[0, 0, 10, 10]], float), gt_classes=np.array([0]),
                    boxes=np.array([[0, 0, 10, 10]], float), scores=np.array([0.6]), classes=np.array([0]))
    assert f1_best_conf([a, b]) == 0.2
    assert count_mae([a, b], 0.85) == 1.0
    assert count_mae([a, b], 0.7) == 0.5  # a: 2 found (0.9, 0.8), 2 labels; b: 0 found, 1 label
    assert count_mae([a, b], 0.1) == 0.5  # a: 3 found, 2 labels; b: 1 and 1


def test_each_species_gets_the_threshold_of_its_own_best_f1():
    """Species 0: a hit at 0.9, a false one at 0.7, a hit at 0.4, 2 labels: F1 2/3 at 0.9, 1/2 at 0.7,
    4/5 at 0.4 -> 0.4. Species 1: a hit at 0.6, a false one at 0.3, 1 label -> 0.6. Species 2 has no
    label: no threshold of its own."""
    from bpr.results.evaluate import ImageResult, class_thresholds

    image = ImageResult(
        gt_boxes=np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float),
        gt_classes=np.array([0, 0, 1]),
        boxes=np.array([[0, 0, 10, 10], [60, 60, 70, 70], [20, 0, 30, 10], [40, 0, 50, 10], [80, 80, 90, 90],
                        [0, 0, 10, 10]], float),
        scores=np.array([0.9, 0.7, 0.4, 0.6, 0.3, 0.8]), classes=np.array([0, 0, 0, 1, 1, 2]))
    assert class_thresholds([image], {0: "urchin", 1: "star", 2: "crab"}) == {"urchin": 0.4, "star": 0.6}


def test_the_pseudo_box_score_is_calibrated_to_a_precision_by_hand():
    """Frame a as above (hits at 0.9 and 0.2, a false detection at 0.8), frame b a hit at 0.6 and a false
    one at 0.3. Precision from the top: 0.9: 1/1, 0.8: 1/2, 0.6: 2/3, 0.3: 2/4, 0.2: 3/5."""
    from bpr.results.evaluate import ImageResult, calibrated_conf

    a = ImageResult(gt_boxes=np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), gt_classes=np.array([0, 0]),
                    boxes=np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float),
                    scores=np.array([0.9, 0.8, 0.2]), classes=np.array([0, 0, 0]))
    b = ImageResult(gt_boxes=np.array([[0, 0, 10, 10]], float), gt_classes=np.array([0]),
                    boxes=np.array([[0, 0, 10, 10], [70, 70, 80, 80]], float), scores=np.array([0.6, 0.3]),
                    classes=np.array([0, 0]))
    assert calibrated_conf([a, b], 0.6) == 0.2   # the lowest score reaching it, though 0.3 dips below
    assert calibrated_conf([a, b], 0.65) == 0.6
    assert calibrated_conf([a, b], 1.0) == 0.9
    assert calibrated_conf([b], 0.6) == 0.6
    # a species' detection on another species' label is wrong
    wrong = ImageResult(gt_boxes=b.gt_boxes, gt_classes=np.array([1]), boxes=b.boxes, scores=b.scores,
                        classes=b.classes)
    assert calibrated_conf([wrong], 0.1) == 1.0  # never reached: nothing is a pseudo-box
    assert calibrated_conf([], 0.6) == 1.0
