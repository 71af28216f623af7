"""Run a detector over videos and image sets, storing detections; resumable and cancellable.

Frames are read forward (no seeking between them), predicted in batches, and each batch's detections
are written with the list of frames it covered in one transaction: a kill loses at most the batch in
flight, and running again continues with the frames not yet processed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bpr.config import KEEP_CONF
from bpr.data.media import VideoReader
from bpr.data.store import LINK_HINT, NotFoundError, Project, unique_name


@dataclass
class DetectSummary:
    run: str
    videos: int = 0            # images included (one-frame videos)
    images: int = 0
    frames: int = 0            # frames processed now
    skipped: int = 0           # frames already processed earlier (resume)
    detections: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def load_model(weights: str | os.PathLike, device: str = "auto"):
    """(ultralytics YOLO model, device string) for local weights; never downloads. Inference runs on one
    device: of a DDP run's GPUs, the first."""
    from bpr.offline import local_weights
    from bpr.learn.training import inference_device, resolve_device

    path = local_weights(weights)  # checks the file exists; ultralytics would try to download it
    from ultralytics import YOLO

    return YOLO(str(path)), inference_device(resolve_device(device))


def inference_size(model, imgsz: int | None = None) -> int:
    """``imgsz`` if given, else the size the weights were trained at (their checkpoint says), else 640."""
    return imgsz or model.overrides.get("imgsz") or 640


def _read_frames(project: Project | None, frames: Iterable[tuple[dict, int]]) -> Iterator[np.ndarray]:
    """BGR images for (video, frame) pairs, reading each video forward with one reader. Without a
    project (on a cluster's worker), the videos' paths are absolute already."""
    reader, current = None, None
    try:
        for video, frame in frames:
            path = project.resolve_path(video["path"]) if project is not None else Path(video["path"])
            if video["kind"] == "image":
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise FileNotFoundError(
                        f"{path}: image of {video['id']} cannot be read" if path.exists() else
                        f"{path}: image of {video['id']} is gone ({LINK_HINT})")
                yield image
                continue
            if current != video["id"]:
                if reader is not None:
                    reader.close()
                reader, current = VideoReader(path, cache_mb=0), video["id"]
            yield reader.read(frame)
    finally:
        if reader is not None:
            reader.close()


def _prefetch(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` on a background thread, ``depth`` ahead: frames decode while the model infers
    (OpenCV's decoding and torch's inference both release the GIL)."""
    import queue
    import threading

    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []
    stop = threading.Event()

    def fill():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer, raised there
            failure.append(e)
        finally:
            while True:  # the end marker; once the consumer has stopped, nobody would take it
                try:
                    buffer.put(done, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    thread = threading.Thread(target=fill, name="bpr-frame-reader", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join(timeout=5)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_frames(project: Project | None, model, frames: list[tuple[dict, int]], imgsz: int = 640,
                   conf: float = 0.001, device: str = "cpu", batch: int = 8, progress=None,
                   augment: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame: (boxes (N, 4) xyxy pixels, scores (N,), classes (N,)), in the order of ``frames``.
    ``augment``: ultralytics' test-time augmentation (the frame flipped and at two smaller scales)."""
    done = 0
    for images in _batches(_prefetch(_read_frames(project, frames), depth=2 * batch), batch):
        results = model.predict(images, imgsz=imgsz, conf=conf, device=device, batch=len(images),
                                verbose=False, max_det=300, augment=augment)
        done += len(images)
        if progress:  # before the batch is handed on: a reader zipping the frames stops after the last one
            progress(done, len(frames), "predicting")
        for result in results:
            b = result.boxes
            yield (b.xyxy.cpu().numpy().astype(float), b.conf.cpu().numpy().astype(float),
                   b.cls.cpu().numpy().astype(int))


def detection_run(project: Project, run: str | None = None, weights: str | os.PathLike | None = None) -> dict:
    """The run detections are stored under: a training run, or a record for outside weights."""
    if run is not None:
        record = project.run(run)
        if not record.weights:
            raise ValueError(f"run {run} has no weights (status {record.status})")
        return record
    if weights is None:
        raise ValueError("give a run or weights")
    from bpr.offline import local_weights

    path = Path(weights).absolute()
    local_weights(path)  # a missing file is refused before a record of it is made
    digest = _file_digest(path)
    runs = project.runs()
    for record in runs:
        config = record.config or {}
        if "external_weights" not in config:
            continue
        same = (config.get("sha256") == digest if "sha256" in config  # records made before bpr kept it lack it
                else Path(config["external_weights"]) == path)
        if same:  # the same model: its detections go on (a resume), wherever the file now is
            project.update_run(record.name, weights=project.stored_path(path),
                               config={**config, "external_weights": str(path), "sha256": digest})
            return project.run(record.name)
    # Another model's file of the same name (every run's is best.pt) gets a record of its own: adding
    # to the first one's would mix two models' detections, and skip the frames the first one did.
    name = unique_name(f"weights:{path.stem}", {r.name for r in runs})
    project.create_run(name, {"external_weights": str(path), "sha256": digest})
    project.update_run(name, status="finished", finished=time.time(), weights=project.stored_path(path))
    return project.run(name)


def _file_digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def detect(project: Project, run: str | None = None, weights: str | os.PathLike | None = None,
           videos: list[str] | None = None, stride: int = 1, start: int = 0, stop: int | None = None,
           batch: int = 8, min_conf: float = KEEP_CONF, imgsz: int | None = None, device: str = "auto",
           progress: Callable[[int, int, str], None] | None = None,
           cancel: Callable[[], bool] | None = None, ray: str | None = None) -> DetectSummary:
    """Detect on every ``stride``-th frame in [start, stop) of the chosen videos (default: all readable).

    Detections at or above ``min_conf`` are stored (keep it low: counts and review choose their own
    threshold later). Frames already processed by this run are skipped, so a second call resumes.
    With ``ray`` ("local" for a Ray started on this machine, else a cluster's address), the frames are
    detected in shards on the cluster's workers (bpr.results.cluster); this process stores them.
    """
    if stride < 1:
        raise ValueError("stride must be at least 1")
    record = detection_run(project, run, weights)
    requested = device  # a cluster's workers choose their own device from it
    model, device = load_model(project.resolve_path(record.weights), device)
    imgsz = inference_size(model, imgsz)
    species = {int(k): project.species_id(v) for k, v in model.names.items()}
    # Counts list every species the model looks for, found or not (MaxN 0 is a result); and each
    # video's floor, the confidence its boxes were kept from (the highest, where detection went on at
    # another): a count at a lower threshold counts only what was kept.
    chosen = [v for v in project.videos() if videos is None or v["id"] in videos]
    if videos is not None:
        missing = set(videos) - {v["id"] for v in chosen}
        if missing:
            raise NotFoundError(f"no video(s) {sorted(missing)} in {project.folder}")
    floors = dict((record.summary or {}).get("detection_floor", {}))
    floors.update({v["id"]: max(min_conf, floors.get(v["id"], 0.0)) for v in chosen})
    project.update_run(record.name, summary={**(record.summary or {}), "classes": list(model.names.values()),
                                                "detection_floor": floors})
    summary = DetectSummary(run=record.name)
    plan: list[tuple[dict, int]] = []
    for video in chosen:
        if video["status"] != "ok" or not video["frame_count"]:
            continue
        done = {f for (f,) in project.conn.execute(
            "SELECT frame_index FROM detected_frames WHERE run_id = ? AND video_id = ?",
            (record.id, video["id"]))}
        end = video["frame_count"] if stop is None else min(stop, video["frame_count"])
        wanted = range(start, end, stride)
        todo = [f for f in wanted if f not in done]
        summary.skipped += len(wanted) - len(todo)
        plan += [(video, f) for f in todo]
        summary.videos += 1
        summary.images += video["kind"] == "image"
    started = time.perf_counter()
    total = len(plan)
    if ray is None:  # one stream over the whole plan: each video is opened once and read forward
        predictions = predict_frames(project, model, plan, imgsz=imgsz, conf=min_conf, device=device, batch=batch)
        chunks = _predicted_batches(plan, predictions, batch, cancel)
    else:  # shards on a cluster's workers, as they finish
        from bpr.results.cluster import detect_shards

        weights_path = project.resolve_path(record.weights).absolute()
        chunks = detect_shards(plan, weights_path, imgsz, min_conf, requested, batch,
                               None if ray == "local" else ray, project.resolve_path, cancel)
    try:
        for chunk, results in chunks:
            _store(project, record.id, species, chunk, results, summary)
            if progress:
                progress(summary.frames, total, "detecting")
    finally:
        chunks.close()  # stops the frame reader, or cancels the shards not finished
    summary.cancelled = summary.frames < total
    summary.seconds = time.perf_counter() - started
    return summary


def _predicted_batches(plan: list[tuple[dict, int]], predictions: Iterator, batch: int,
                       cancel: Callable[[], bool] | None) -> Iterator[tuple[list[tuple[dict, int]], list]]:
    """(batch of the plan, its predictions), until ``cancel()`` turns true before a batch."""
    try:
        for chunk in _batches(plan, batch):
            if cancel is not None and cancel():
                return
            yield chunk, [next(predictions) for _ in chunk]
    finally:
        predictions.close()


def _store(project: Project, run_id: int, species: dict[int, int], chunk: list[tuple[dict, int]],
           results: list, summary: DetectSummary) -> None:
    """One batch's detections and the frames it covered, in one transaction."""
    rows = [(run_id, video["id"], frame, species[int(c)], *map(float, box), float(s))
            for (video, frame), (boxes, scores, classes) in zip(chunk, results)
            for box, s, c in zip(boxes, scores, classes)]
    with project.transaction() as conn:
        conn.executemany(
            "INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
            "confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO detected_frames VALUES (?, ?, ?)",
                         [(run_id, video["id"], frame) for video, frame in chunk])
    summary.frames += len(chunk)
    summary.detections += len(rows)
