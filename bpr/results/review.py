"""The missing-label finder: confident detections on partially labeled frames that overlap no label,
and the pseudo-boxes a self-training round is about to train on.

On a ``partial`` frame an annotator boxed some animals and left others; a detection the model is
confident about that overlaps none of the labels is most likely one of the unboxed animals. Accepting
turns it into a label (source ``accepted``); rejecting hides it for good. A rejected pseudo-box is
never used again, as a pseudo-box or as an ignore region.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from bpr.results.evaluate import box_iou
from bpr.data.store import ImageSequence, Project

OVERLAP_IOU = 0.3  # a detection overlapping a label at this IoU or more is that label, not a new animal
MIN_SIDE = 2.0         # pixels: a thinner box is degenerate, no animal
MAX_FRAME_SHARE = 0.5  # a box over half of the frame is an untrained model's guess, no animal


def plausible(box: tuple[float, float, float, float], width: int | None, height: int | None) -> bool:
    """Whether a suggested box can be an animal: not degenerate, not covering most of its frame."""
    w, h = box[2] - box[0], box[3] - box[1]
    if w < MIN_SIDE or h < MIN_SIDE:
        return False
    return not (width and height and w * h > MAX_FRAME_SHARE * width * height)


@dataclass
class Suggestion:
    detection_id: int | None       # a detection's, or None for a pseudo-box
    video_id: str
    frame_index: int
    species: str
    confidence: float
    box: tuple[float, float, float, float]
    pseudo_id: int | None = None   # a pseudo-box's id (bpr.learn.pseudo)
    round: int | None = None       # the self-training round that trains on it


def missing_labels(project: Project, run: str, conf: float = 0.5, video: str | ImageSequence | None = None,
                   overlap_iou: float = OVERLAP_IOU) -> list[Suggestion]:
    """Suggestions, most confident first, on the ``partial`` frames (of ``video``, or all).

    ``video`` is a video's id, an image folder's name or ImageSequence, or an image's id (its folder:
    an annotator working through an image set wants the suggestions of all its images, not one at a
    time).
    """
    run_id = project.run_id(run)
    params: list = [run_id, conf]
    video_filter = ""
    if video is not None:
        ids, _ = project.resolve_scope(video)
        video_filter, params = "AND d.video_id IN (SELECT value FROM json_each(?))", params + [json.dumps(ids)]
    detections = project.conn.execute(
        f"""SELECT d.id, d.video_id, d.frame_index, s.name, d.confidence, d.x1, d.y1, d.x2, d.y2
            FROM detections d JOIN frames f ON f.video_id = d.video_id AND f.frame_index = d.frame_index
            JOIN species s ON s.id = d.species_id
            WHERE d.run_id = ? AND d.confidence >= ? AND f.label_status = 'partial' {video_filter}
              AND d.id NOT IN (SELECT detection_id FROM rejected_detections)
            ORDER BY d.video_id, d.frame_index""", params).fetchall()
    labels: dict[tuple[str, int], np.ndarray] = {}
    for vid, frame in {(d[1], d[2]) for d in detections}:
        labels[(vid, frame)] = np.array(project.conn.execute(
            "SELECT x1, y1, x2, y2 FROM boxes WHERE video_id = ? AND frame_index = ?", (vid, frame)
        ).fetchall(), float).reshape(-1, 4)
    sizes = _sizes(project)
    out = []
    for det_id, vid, frame, species, confidence, *box in detections:
        if not plausible(box, *sizes[vid]):
            continue
        here = labels[(vid, frame)]
        if len(here) and box_iou(np.array([box], float), here).max() >= overlap_iou:
            continue
        out.append(Suggestion(det_id, vid, frame, species, confidence, tuple(box)))
    out.sort(key=lambda s: -s.confidence)
    return out


def pseudo_suggestions(project: Project, video: str | ImageSequence | None = None) -> list[Suggestion]:
    """The pseudo-boxes of the latest teacher (the round about to train, or trained last) not yet
    reviewed, on the frames of ``video`` (as for missing_labels) or everywhere, most confident first."""
    teacher = project.latest_pseudo_teacher()
    if teacher is None:
        return []
    ids = None if video is None else set(project.resolve_scope(video)[0])
    sizes = _sizes(project)
    out = [Suggestion(None, p["video_id"], p["frame_index"], p["species"], p["score"],
                      (p["x1"], p["y1"], p["x2"], p["y2"]), pseudo_id=p["id"], round=p["round"])
           for p in project.pseudo_boxes(teacher=teacher, kind="pseudo")
           if (ids is None or p["video_id"] in ids)
           and plausible((p["x1"], p["y1"], p["x2"], p["y2"]), *sizes[p["video_id"]])]
    out.sort(key=lambda s: -s.confidence)
    return out


def _sizes(project: Project) -> dict[str, tuple[int | None, int | None]]:
    return {v["id"]: (v["width"], v["height"]) for v in project.videos()}


def accept(project: Project, suggestion: Suggestion) -> int:
    """Turn a suggestion into a label; returns the new box id."""
    if suggestion.pseudo_id is not None:
        return project.review_pseudo_box(suggestion.pseudo_id, accept=True)
    return project.add_box(suggestion.video_id, suggestion.frame_index, suggestion.species, suggestion.box,
                           source="accepted")


def reopen(project: Project, suggestion: Suggestion) -> None:
    """Undo an accept or a reject: the suggestion is one again (an accepted one's label is deleted)."""
    if suggestion.pseudo_id is not None:
        project.reopen_pseudo_box(suggestion.pseudo_id)
        return
    with project.transaction():
        project.conn.execute("DELETE FROM rejected_detections WHERE detection_id = ?", (suggestion.detection_id,))


def reject(project: Project, suggestion: Suggestion) -> None:
    if suggestion.pseudo_id is not None:
        project.review_pseudo_box(suggestion.pseudo_id, accept=False)
        return
    with project.transaction():
        project.conn.execute("INSERT OR IGNORE INTO rejected_detections VALUES (?, ?)",
                             (suggestion.detection_id, time.time()))
