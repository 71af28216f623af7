"""Fixtures shared by all tests: the real data in ../shared/data, a fresh project, the demo project."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (the ../shared checkout is absent)")
    return path


@pytest.fixture(autouse=True)
def _private_settings(tmp_path_factory, monkeypatch):
    """No test touches the user's settings: bpr's (and ultralytics') config goes to a temp folder."""
    config = tmp_path_factory.getbasetemp() / "bpr-config"
    monkeypatch.setenv("BPR_CONFIG_DIR", str(config))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(config / "ultralytics"))


@pytest.fixture
def project(tmp_path):
    from bpr.data.store import Project

    with Project.create(tmp_path / "project") as p:
        yield p


@pytest.fixture
def other_process():
    """Another live process, and its ``owner`` record as a run would store it (see bpr.data.store.this_process)."""
    import json
    import socket
    import subprocess
    import sys

    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield child, json.dumps([socket.gethostname(), child.pid, psutil.Process(child.pid).create_time()])
    finally:
        child.kill()
        child.wait()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """The demo project, built once per test session; use ``demo_project`` for a private copy."""
    from bpr.demo import build_demo

    folder = tmp_path_factory.mktemp("demo-template") / "demo"
    build_demo(folder)
    return folder


@pytest.fixture
def demo_project(demo_template, tmp_path):
    from bpr.data.store import Project

    folder = tmp_path / "demo"
    shutil.copytree(demo_template, folder)
    with Project.open(folder) as p:
        yield p


@pytest.fixture
def ultralytics_offline(tmp_path_factory):
    """ultralytics configured offline (config, font, settings) in a private folder."""
    from bpr.offline import configure

    return configure()


def pytest_configure(config):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason, where torch sees no CUDA device."""
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda:
        return
    import torch

    if not torch.cuda.is_available():
        for item in cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def trained_template(demo_template, tmp_path_factory):
    """The demo project with one tiny training run ("tiny", 1 epoch at 96 px), built once."""
    from bpr.learn.loss import Rebalancing
    from bpr.data.store import Project
    from bpr.learn.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("trained-template") / "demo"
    shutil.copytree(demo_template, folder)
    with Project.open(folder) as p:
        train(p, TrainConfig(epochs=1, imgsz=96, batch=16, workers=0, device="cpu",
                             rebalancing=Rebalancing(p_obj=0.5)), name="tiny")
    return folder


@pytest.fixture
def trained_project(trained_template, tmp_path):
    from bpr.data.store import Project

    folder = tmp_path / "trained"
    shutil.copytree(trained_template, folder)
    with Project.open(folder) as p:
        yield p


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any attempt to reach the network (DNS included)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError(f"test forbids network access: {args!r}")

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        refuse(address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: refuse(address))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def perfect_teacher(project, model, frames, imgsz=640, conf=0.001, device="cpu", batch=8, progress=None,
                    augment=False):
    """In place of bpr.results.detect.predict_frames for self-training tests on the demo: a teacher that
    finds what the demo drew (its truth.json), the boxed animals at 0.8 and the unboxed ones at 0.9 and
    0.3 in turn (a pseudo-box, then an ignore region). A model trained for a few CPU epochs finds
    nothing a finder may suggest (boxes over most of the frame)."""
    import json

    import numpy as np

    from bpr.demo import TRUTH_FILE

    truth = json.loads((project.folder / TRUTH_FILE).read_text())["videos"]
    class_of = {name: int(k) for k, name in model.names.items()}
    for video, frame in frames:
        animals = truth[video["id"]].get(str(frame), [])
        scores = [0.8 if a[5] else (0.9 if i % 2 == 0 else 0.3) for i, a in enumerate(animals)]
        kept = [i for i, s in enumerate(scores) if s >= conf]
        yield (np.array([animals[i][1:5] for i in kept], float).reshape(-1, 4), np.array([scores[i] for i in kept]),
               np.array([class_of[animals[i][0]] for i in kept], int))


@pytest.fixture
def truth_teacher(monkeypatch):
    """Teachers detect with perfect_teacher (the training itself is real)."""
    import bpr.results.detect

    monkeypatch.setattr(bpr.results.detect, "predict_frames", perfect_teacher)
