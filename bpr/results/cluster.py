"""Detection over a video archive on a Ray cluster (``pip install "bpr-detect[cluster]"``).

The frames to detect on are cut into shards (a video, or a range of a long one's frames). Each shard is
a Ray task: a worker reads its frames and infers, with the model loaded once per worker process. The
detections stream back to the driver, which alone writes the project's SQLite store, one transaction a
shard. A frame is stored only with its shard, so a worker killed mid-shard costs that shard alone: Ray
runs the task again, and nothing is stored twice or lost. A rerun skips the frames already stored.

Workers read the videos and the weights at the paths the driver gives: on a cluster, the project folder
must be on storage every node mounts at the same path (see docs/cluster.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

SHARD_FRAMES = 256   # frames a shard: a long video is spread over the workers; a killed one loses little
RETRIES = 3          # a shard's task is run again this many times when its worker dies
WORKER_THREADS = 8   # most threads a CPU worker infers on (torch gains little beyond; ultralytics caps at 8
                     # too): a machine with more cores runs several workers
KILL_ONCE_ENV = "BPR_TEST_KILL_ONCE"  # tests: a worker that deletes this file first exits mid-shard

_models: dict[tuple[str, str], tuple] = {}  # (weights, device) -> (model, device), per worker process


def ray_module():
    try:
        import ray
    except ImportError:
        raise RuntimeError('detection on a Ray cluster needs Ray: pip install "bpr-detect[cluster]"') from None
    return ray


def shards(plan: list[tuple[dict, int]], size: int) -> list[list[tuple[dict, int]]]:
    """The plan's (video, frame) pairs cut into shards of at most ``size`` frames of one video each."""
    out: list[list[tuple[dict, int]]] = []
    for video, frame in plan:
        if not out or out[-1][0][0]["id"] != video["id"] or len(out[-1]) >= size:
            out.append([])
        out[-1].append((video, frame))
    return out


def _detect_shard(weights: str, shard: list[tuple[dict, int]], imgsz: int, conf: float, device: str,
                  batch: int, threads: int) -> list[tuple]:
    """On a worker: the shard's predictions, in its order (videos carry absolute paths). It computes on
    ``threads`` threads, the CPUs its task holds: a worker process may have been started for a task
    that held more, and more threads than cores thrash."""
    import cv2
    import torch

    from bpr.results.detect import load_model, predict_frames

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    flag = os.environ.get(KILL_ONCE_ENV)
    if flag:
        try:
            os.remove(flag)  # only one worker wins the file: it dies, as a node lost mid-shard would
            os._exit(1)
        except FileNotFoundError:
            pass
    key = (weights, device)
    if key not in _models:
        _models[key] = load_model(weights, device)
    model, resolved = _models[key]
    return list(predict_frames(None, model, shard, imgsz=imgsz, conf=conf, device=resolved, batch=batch))


def connect(address: str | None):
    """Ray, connected: to the cluster at ``address``, or to a Ray started on this machine (None)."""
    ray = ray_module()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False if address is None else None, log_to_driver=False,
                 configure_logging=False)
    return ray


def detect_shards(plan: list[tuple[dict, int]], weights: Path, imgsz: int, conf: float, device: str,
                  batch: int, address: str | None, resolve: Callable[[str], Path],
                  cancel: Callable[[], bool] | None = None) -> Iterator[tuple[list[tuple[dict, int]], list]]:
    """(shard, its predictions) as each shard finishes, on any worker. Stops when ``cancel()`` turns
    true, cancelling the shards not finished (their frames are done by the next run)."""
    ray = connect(address)
    resources = ray.cluster_resources()
    gpus = 1 if resources.get("GPU") else 0
    # One worker a GPU, with its share of its machine's cores for decoding; without GPUs, a worker computes
    # on up to WORKER_THREADS cores, as plain detection does (one single-threaded worker a core runs as
    # many decoders and models side by side: on 2 cores that gave 0.4x the frames of one process).
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    if gpus:
        nodes = [n for n in nodes if n.get("GPU")]
        cpus = max(1, int(min((n["CPU"] // n["GPU"] for n in nodes), default=1)))
    else:
        cpus = max(1, min(WORKER_THREADS, int(min((n["CPU"] for n in nodes), default=1))))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES)(_detect_shard)
    # at most SHARD_FRAMES a shard, and two shards a worker at least, so that a short clip is shared too
    workers = max(1, int(resources.get("GPU") or sum(int(n["CPU"]) // cpus for n in nodes) or 1))
    size = max(1, min(SHARD_FRAMES, -(-len(plan) // (2 * workers))))
    # A worker may be another machine: it gets the videos' paths as the driver resolves them.
    located = {}
    for video, _ in plan:
        if video["id"] not in located:
            located[video["id"]] = {**video, "path": str(resolve(video["path"]))}
    pending = {}
    for shard in shards(plan, size):
        shard = [(located[video["id"]], frame) for video, frame in shard]
        pending[task.remote(str(weights), shard, imgsz, conf, device, batch, cpus)] = shard
    try:
        while pending:
            if cancel is not None and cancel():
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                shard = pending.pop(ref)
                yield shard, ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
