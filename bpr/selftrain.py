"""Self-training rounds: each round's teacher is the round before.

Round 0 trains on the labels (with any BPR settings), or is a finished run given to start from. Each
next round detects on the partially labeled training frames with the previous round's best weights
(with test-time augmentation by default), keeps what it found as pseudo-boxes and ignore regions in
the project (bpr.learn.pseudo; never as labels), and trains a fresh student on the labels plus those.
A pseudo-box the teacher finds again where the round before had one (same species, IoU >= MATCH_IOU)
keeps the round it was first found in; the rounds stop early when a round finds no new one.

Every step can be interrupted and the same call goes on: a finished round is kept, a stopped run is
resumed from its last epoch, and a teacher's mining is repeated (it replaces what it stored before).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bpr.config import SelfTraining, TrainConfig
from bpr.data.dataset import PROTOCOLS
from bpr.data.store import NotFoundError, Project, Run
from bpr.learn.pseudo import MATCH_IOU, mine
from bpr.learn.training import TrainEvent, TrainingCancelled, export_manifest, train
from bpr.learn.loss import pairwise_iou
from bpr.results.review import plausible


@dataclass
class Mining:
    """What one teacher gave its round."""

    round: int
    teacher: str
    frames: int = 0
    pseudo_conf: float = 1.0           # the score its pseudo-boxes start at
    calibrated: bool = False           # that score read off the val frames (else fixed by the user)
    pseudo_boxes: int = 0
    new_pseudo_boxes: int = 0      # first found this round
    ignore_regions: int = 0

    def __str__(self) -> str:
        never = " (its detections on val never reach the pseudo-box precision)" \
            if self.calibrated and self.pseudo_conf >= 1.0 else ""
        return (f"round {self.round}: {self.teacher} found {self.pseudo_boxes} pseudo-boxes from score "
                f"{self.pseudo_conf:.3g}{never} ({self.new_pseudo_boxes} new) and {self.ignore_regions} ignore "
                f"regions on {self.frames} partially labeled frames")


@dataclass
class SelfTrainResult:
    runs: list[Run] = field(default_factory=list)          # round 0 first
    mining: list[Mining] = field(default_factory=list)     # the minings done by this call
    waiting_for_review: int | None = None  # the round whose pseudo-boxes wait for review before it trains
    stopped_early: str = ""                # why the rounds stopped before the last


def round_name(name: str, round: int) -> str:
    return f"{name}-r{round}"


def mine_round(project: Project, teacher: str, round: int, config: TrainConfig, tta: bool = True,
               batch: int = 8, on_event: Callable[[TrainEvent], None] | None = None,
               cancel: Callable[[], bool] | None = None, imgsz: int | None = None) -> Mining:
    """Detect with ``teacher``'s weights on the partially labeled training frames it trained on, and
    store what it finds for round ``round`` (config.pseudo's thresholds) in place of what it gave before.
    ``imgsz``: detect (and calibrate) at this size instead of the one the teacher trained at."""
    from bpr.results.detect import inference_size, load_model, predict_frames

    record = project.run(teacher)
    if record.status != "finished" or not record.weights:
        raise ValueError(f"run {teacher} has not finished: it cannot teach yet")
    # Stored as found; a student that trains on the ignore band alone reads its pseudo-boxes as ignore
    # regions (export_yolo's pseudo_as_ignore), so students of one teacher share one mining.
    manifest = json.loads(export_manifest(project, teacher).read_text())
    hidden = set(manifest["hidden_box_ids"])  # what the teacher was not shown is not a label here either
    frames, _ = project.readable_frames("train", ("partial",))
    model, device = load_model(project.resolve_path(record.weights), config.device)
    size = inference_size(model, imgsz)
    pseudo_conf = config.pseudo.pseudo_conf
    if pseudo_conf is None:
        pseudo_conf = teacher_pseudo_conf(project, teacher, model, device, size, config.pseudo.pseudo_precision,
                                          tta, config.protocol, batch, on_event, cancel)
    species = {int(k): project.species_id(v) for k, v in model.names.items()}
    earlier_teacher = record.config.get("pseudo", {}).get("teacher_run")  # absent from a teacher carried here
    earlier = _by_frame(project.pseudo_boxes(teacher=earlier_teacher, kind="pseudo")) \
        if earlier_teacher and _exists(project, earlier_teacher) else {}
    rejected = _by_frame(project.pseudo_boxes(kind="pseudo", review=("rejected",)))

    summary = Mining(round=round, teacher=teacher, frames=len(frames), pseudo_conf=pseudo_conf,
                     calibrated=config.pseudo.pseudo_conf is None)
    rows = []
    predictions = predict_frames(project, model, frames, imgsz=size, conf=config.pseudo.ignore_conf,
                                 device=device, batch=batch, augment=tta)
    try:
        for done, ((video, frame), (boxes, scores, classes)) in enumerate(zip(frames, predictions), 1):
            if cancel is not None and cancel():
                raise TrainingCancelled(f"self-training cancelled while {teacher} was finding pseudo-boxes; "
                                        "the same command goes on")
            labels = [[b["x1"], b["y1"], b["x2"], b["y2"]] for b in project.boxes(video["id"], frame)
                      if b["id"] not in hidden]
            boxes_t = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            pseudo, ignore = mine(boxes_t, torch.as_tensor(scores, dtype=torch.float32),
                                  torch.tensor(labels, dtype=torch.float32).reshape(-1, 4),
                                  config.pseudo.ignore_conf, pseudo_conf,
                                  _boxes(rejected.get((video["id"], frame), [])))
            before = earlier.get((video["id"], frame), [])
            for i in range(len(boxes)):
                if not (pseudo[i] or ignore[i]) or not plausible(boxes[i], video["width"], video["height"]):
                    continue
                kind, first = ("pseudo", _first_round(boxes_t[i], species[int(classes[i])], before, round)) \
                    if pseudo[i] else ("ignore", round)
                rows.append((kind, video["id"], frame, species[int(classes[i])], *map(float, boxes[i]),
                             float(scores[i]), first))
                summary.pseudo_boxes += kind == "pseudo"
                summary.new_pseudo_boxes += kind == "pseudo" and first == round
                summary.ignore_regions += kind == "ignore"
            if on_event is not None and (done % 50 == 0 or done == len(frames)):
                on_event(TrainEvent("mine", teacher, batch=done, batches=len(frames),
                                    message=f"round {round}: {teacher} finding pseudo-boxes, frame {done}/"
                                            f"{len(frames)}"))
    finally:
        predictions.close()
    project.replace_pseudo_boxes(teacher, round, rows)
    mined = mining_settings(round, config, tta) | ({"imgsz": imgsz} if imgsz else {})  # (not a round's own)
    project.update_run(teacher, summary={**(record.summary or {}), "mined": mined, "pseudo_conf": pseudo_conf})
    return summary


def teacher_pseudo_conf(project: Project, teacher: str, model, device: str, imgsz: int, precision: float,
                        tta: bool, protocol: str, batch: int = 8, on_event: Callable[[TrainEvent], None] | None = None,
                        cancel: Callable[[], bool] | None = None) -> float:
    """The teacher's pseudo-box score, calibrated on the val frames it was validated on (the fully
    labeled ones, or under the all-labeled protocol every labeled one), as it detects when it mines:
    with or without test-time augmentation."""
    from bpr.results.evaluate import calibrated_conf, scored_frames

    frames, _ = project.readable_frames("val", PROTOCOLS[protocol]["val"])
    if not frames:
        which = "fully labeled val frames" if protocol == "dusia" else "labeled val frames"
        raise ValueError(f"calibrating the pseudo-box score needs {which}, and this project has none with a "
                         "readable file: label some, or set a fixed pseudo-box score (--pseudo-conf)")

    def progress(done: int, total: int, _):
        if cancel is not None and cancel():
            raise TrainingCancelled(f"self-training cancelled while {teacher} was calibrated; the same command "
                                    "goes on")
        if on_event is not None:
            on_event(TrainEvent("mine", teacher, batch=done, batches=total,
                                message=f"{teacher} calibrating its pseudo-box score, val frame {done}/{total}"))

    return calibrated_conf(scored_frames(project, model, frames, imgsz=imgsz, device=device, batch=batch,
                                         augment=tta, progress=progress), precision)


def mining_settings(round: int, config: TrainConfig, tta: bool) -> dict:
    """What a teacher's stored findings were mined with (kept in its run's summary)."""
    return {"round": round, "pseudo_conf": config.pseudo.pseudo_conf, "ignore_conf": config.pseudo.ignore_conf,
            "pseudo_precision": config.pseudo.pseudo_precision, "tta": tta}


def mined_already(project: Project, teacher: str, round: int, config: TrainConfig, tta: bool) -> bool:
    """Whether the teacher's stored findings are what this round asks for."""
    return (project.run(teacher).summary or {}).get("mined") == mining_settings(round, config, tta)


def _by_frame(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        out.setdefault((row["video_id"], row["frame_index"]), []).append(row)
    return out


def _boxes(rows: list[dict]) -> torch.Tensor:
    return torch.tensor([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], dtype=torch.float32).reshape(-1, 4)


def _first_round(box: torch.Tensor, species_id: int, before: list[dict], round: int) -> int:
    """The round a pseudo-box was first found in: that of the round before's box it repeats, if any."""
    same = [r for r in before if r["species_id"] == species_id]
    if not same:
        return round
    iou = pairwise_iou(box.view(1, 1, 4), _boxes(same)[None])[0, 0]
    best = int(iou.argmax())
    return same[best]["first_round"] if float(iou[best]) >= MATCH_IOU else round


def selftrain(project: Project, config: TrainConfig, name: str, settings: SelfTraining | None = None,
              from_run: str | None = None, pause_for_review: bool = False,
              on_event: Callable[[TrainEvent], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> SelfTrainResult:
    """Train (or go on with) the rounds ``name``-r0 ... ``name``-rN.

    ``from_run``: a finished run to use as round 0 instead of training ``name``-r0. ``pause_for_review``:
    return after a teacher has found a round's pseudo-boxes, before that round trains, so that the user
    can accept or reject them (the next call trains it). Cancelling raises TrainingCancelled.
    """
    settings = settings or SelfTraining()
    result = SelfTrainResult()
    base = dataclasses.replace(config.pseudo, teacher="none", teacher_run=None, round=0)
    teacher = from_run or round_name(name, 0)
    if from_run is not None:
        result.runs.append(project.run(from_run))
        if result.runs[0].status != "finished":
            raise ValueError(f"run {from_run} has not finished: finish it, or start the rounds without it")
    else:
        result.runs.append(_train_round(project, dataclasses.replace(config, pseudo=base), teacher, on_event, cancel))
    for k in range(1, settings.rounds + 1):
        student = round_name(name, k)
        if not _exists(project, student):
            if not mined_already(project, teacher, k, config, settings.tta):
                mining = mine_round(project, teacher, k, config, tta=settings.tta, on_event=on_event, cancel=cancel)
                result.mining.append(mining)
                found = mining.new_pseudo_boxes if config.pseudo.pseudo_boxes else \
                    mining.pseudo_boxes + mining.ignore_regions
                if not found:
                    result.stopped_early = (f"round {k}: {teacher} found no new pseudo-box"
                                            if config.pseudo.pseudo_boxes else f"round {k}: {teacher} found nothing")
                    break
                if pause_for_review:
                    result.waiting_for_review = k
                    break
        pseudo = dataclasses.replace(base, pseudo_boxes=config.pseudo.pseudo_boxes, teacher_run=teacher, round=k)
        result.runs.append(_train_round(project, dataclasses.replace(config, pseudo=pseudo), student, on_event, cancel))
        teacher = student
    return result


def _exists(project: Project, name: str) -> bool:
    """Whether the project has a run of this name (without decoding every run's record)."""
    try:
        project.run_id(name)
    except NotFoundError:
        return False
    return True


def _train_round(project: Project, config: TrainConfig, name: str, on_event, cancel) -> Run:
    """A round's run: trained, resumed, or as it finished."""
    if not _exists(project, name):
        return train(project, config, name=name, on_event=on_event, cancel=cancel)
    record = project.run(name)
    if record.status == "finished":
        return record
    return train(project, resume=name, on_event=on_event, cancel=cancel)


def pseudo_quality(project: Project, teacher: str, from_score: float | None = None) -> dict[str, float | int]:
    """The teacher's pseudo-boxes against the boxes hidden from it (a controlled partial-label set): the
    share that is a hidden animal (precision; a lower bound, as an animal nobody ever boxed counts as
    wrong) and the share of hidden animals found (recall). Matched per frame at IoU >= 0.5, one to one,
    most confident first, species aside, as the finder's benchmark matches; and the share of their summed
    scores on hidden animals (``score_precision``: what pseudo-boxes weighted by score would train on).
    ``from_score``: instead, everything it found from that score up, ignore regions included (what
    another pseudo-box score would have given)."""
    import numpy as np

    from bpr.results.evaluate import ImageResult, greedy_hits

    hidden_ids = set(json.loads(export_manifest(project, teacher).read_text())["hidden_box_ids"])
    found = _by_frame([row for row in project.pseudo_boxes(
        teacher=teacher, kind="pseudo" if from_score is None else None, review=("pending", "accepted", "rejected"))
        if from_score is None or row["score"] >= from_score])
    hits = hidden = 0
    score_hit = 0.0
    for vid, frame, _ in project.split_frames("train", ("partial",)):
        truth = [b for b in project.boxes(vid, frame) if b["id"] in hidden_ids]
        hidden += len(truth)
        here = found.get((vid, frame), [])
        if not (truth and here):
            continue
        image = ImageResult(
            gt_boxes=np.array([[b["x1"], b["y1"], b["x2"], b["y2"]] for b in truth], float),
            gt_classes=np.zeros(len(truth), int), boxes=_boxes(here).numpy().astype(float),
            scores=np.array([r["score"] for r in here]), classes=np.zeros(len(here), int))
        scores, _, hit = greedy_hits(image, MATCH_IOU)
        hits += int(hit.sum())
        score_hit += float(scores[hit].sum())
    total = sum(len(rows) for rows in found.values())
    score_total = sum(r["score"] for rows in found.values() for r in rows)
    return {"pseudo_boxes": total, "hidden_boxes": hidden, "precision": hits / total if total else 0.0,
            "recall": hits / hidden if hidden else 0.0,
            "score_precision": score_hit / score_total if score_total else 0.0}
