"""The bundled demo project, built offline in seconds: synthetic ROV-like seafloor videos in DUSIA's layout.

A camera drifts over a sandy, murky seafloor texture; invertebrate-like animals of five species sit or
crawl slowly on it. Everything is written as DUSIA ships it (one CVAT video XML per 20-digit video id,
split lists with the leading zeros dropped from the train ids, frame lists) and then imported through
the real DUSIA importer. Training keyframes are *partially* labeled: about 40 % of the animals in the
training videos have no track at all, as in DUSIA. Val/test frames are fully labeled.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bpr.config import Rebalancing, TrainConfig
from bpr.data.formats import import_dusia
from bpr.data.formats.common import ImportReport
from bpr.progress import Progress
from bpr.data.store import Project

WIDTH, HEIGHT, FPS = 640, 360, 30
SPECIES = {  # name as DUSIA spells it -> (BGR colour, CVAT colour)
    "fragile pink urchin": ((150, 90, 230), "#c9446d"),
    "squat lobster": ((40, 110, 230), "#33f690"),
    "White slipper sea cucumber": ((225, 230, 235), "#8b46a6"),
    "Basket star": ((120, 170, 215), "#61aa2f"),
    "Yellow gorgonian": ((40, 200, 235), "#88e3fe"),
}
# (video id, split, frames, frame list step). Ids follow DUSIA's 20-digit date-time pattern.
VIDEOS = [
    ("00002026112409000000", "train", 150, 5),
    ("00002026112409300000", "train", 150, 5),
    ("00002026112410000000", "val", 120, 10),
    ("00002026112410300000", "test", 120, 10),
]
UNBOXED_FRACTION = 0.4


@dataclass
class Animal:
    species: str
    x: float                 # world position of the centre
    y: float
    size: float              # radius-like scale in pixels
    angle: float
    vx: float                # world pixels per frame
    vy: float
    spin: float
    boxed: bool = True


def _seafloor(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A murky sand-and-silt texture: several octaves of smoothed noise in brown-green tones."""
    field = np.zeros((height, width), np.float32)
    for scale, weight in ((64, 0.5), (16, 0.3), (4, 0.15), (1, 0.05)):
        small = rng.random((height // scale + 2, width // scale + 2)).astype(np.float32)
        field += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    field = cv2.normalize(field, None, 0, 1, cv2.NORM_MINMAX)
    sand = np.array([70, 95, 105], np.float32)     # BGR
    silt = np.array([95, 115, 100], np.float32)
    image = sand + (silt - sand) * field[..., None] + 40 * (field[..., None] - 0.5)
    pebbles = rng.random((height, width)) > 0.9985
    image[cv2.dilate(pebbles.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] *= 0.6
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_animal(frame: np.ndarray, a: Animal, cx: float, cy: float) -> None:
    colour = SPECIES[a.species][0]
    s, t = a.size, a.angle
    centre = (int(cx), int(cy))
    if a.species == "fragile pink urchin":
        for k in range(14):
            ang = t + k * math.pi / 7
            tip = (int(cx + 1.6 * s * math.cos(ang)), int(cy + 1.6 * s * math.sin(ang)))
            cv2.line(frame, centre, tip, (120, 70, 200), 1, cv2.LINE_AA)
        cv2.circle(frame, centre, int(s), colour, -1, cv2.LINE_AA)
        cv2.circle(frame, (int(cx - s / 3), int(cy - s / 3)), max(1, int(s / 3)), (200, 170, 250), -1)
    elif a.species == "squat lobster":
        axes = (int(1.3 * s), int(0.6 * s))
        cv2.ellipse(frame, centre, axes, math.degrees(t), 0, 360, colour, -1, cv2.LINE_AA)
        for side in (-1, 1):
            ang = t + side * 0.5
            claw = (int(cx + 1.9 * s * math.cos(ang)), int(cy + 1.9 * s * math.sin(ang)))
            cv2.line(frame, centre, claw, colour, 2, cv2.LINE_AA)
            cv2.circle(frame, claw, max(2, int(s / 3)), (30, 80, 200), -1, cv2.LINE_AA)
    elif a.species == "White slipper sea cucumber":
        axes = (int(1.5 * s), int(0.55 * s))
        cv2.ellipse(frame, centre, axes, math.degrees(t), 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(frame, centre, axes, math.degrees(t), 0, 360, (170, 175, 180), 1, cv2.LINE_AA)
    elif a.species == "Basket star":
        for k in range(5):
            ang = t + k * 2 * math.pi / 5
            mid = (cx + 0.9 * s * math.cos(ang), cy + 0.9 * s * math.sin(ang))
            for curl in (-0.6, 0.6):
                tip = (int(mid[0] + 0.7 * s * math.cos(ang + curl)),
                       int(mid[1] + 0.7 * s * math.sin(ang + curl)))
                cv2.line(frame, (int(mid[0]), int(mid[1])), tip, colour, 1, cv2.LINE_AA)
            cv2.line(frame, centre, (int(mid[0]), int(mid[1])), colour, 2, cv2.LINE_AA)
        cv2.circle(frame, centre, max(2, int(s / 4)), colour, -1, cv2.LINE_AA)
    else:  # Yellow gorgonian: a fan of branches from a holdfast
        base = (cx, cy + s)
        for k in range(7):
            ang = -math.pi / 2 + (k - 3) * 0.22 + 0.1 * math.sin(t)
            tip = (int(base[0] + 2 * s * math.cos(ang)), int(base[1] + 2 * s * math.sin(ang)))
            cv2.line(frame, (int(base[0]), int(base[1])), tip, colour, 2, cv2.LINE_AA)


def _extent(a: Animal) -> tuple[float, float, float, float]:
    """The animal's bounding box around its centre (x1, y1, x2, y2 offsets), as an annotator draws it."""
    s = a.size
    if a.species == "fragile pink urchin":
        return -1.6 * s, -1.6 * s, 1.6 * s, 1.6 * s
    if a.species == "Basket star":
        return -1.6 * s, -1.6 * s, 1.6 * s, 1.6 * s
    if a.species == "Yellow gorgonian":
        return -1.5 * s, -1.0 * s, 1.5 * s, 1.0 * s
    r = (2.1 if a.species == "squat lobster" else 1.5) * s
    return -r, -r, r, r


def _animals(rng: np.random.Generator, world_w: int, world_h: int, count: int) -> list[Animal]:
    names = list(SPECIES)
    animals = []
    for _ in range(count):
        species = names[rng.integers(len(names))]
        mobile = species in ("fragile pink urchin", "squat lobster", "Basket star")
        speed = 0.25 if mobile else 0.0
        animals.append(Animal(
            species=species, x=rng.uniform(30, world_w - 30), y=rng.uniform(30, world_h - 30),
            size=rng.uniform(7, 13), angle=rng.uniform(0, 2 * math.pi),
            vx=rng.uniform(-speed, speed), vy=rng.uniform(-speed, speed),
            spin=rng.uniform(-0.01, 0.01) if mobile else 0.0))
    return animals


def _write_video(path: Path, vid: str, frames: int, seed: int, partial: bool) -> ET.Element:
    """Write one video and return its CVAT 'for video 1.1' annotation tree."""
    rng = np.random.default_rng(seed)
    drift = np.array([rng.uniform(0.6, 1.0), rng.uniform(-0.25, 0.25)])  # camera pixels per frame
    world_w = WIDTH + int(abs(drift[0]) * frames) + 40
    world_h = HEIGHT + int(abs(drift[1]) * frames) + 40
    floor = _seafloor(rng, world_w, world_h)
    animals = _animals(rng, world_w, world_h, count=int(world_w * world_h / 9000))
    for a in animals:
        a.boxed = not partial or rng.random() >= UNBOXED_FRACTION
    snow = rng.uniform(0, 1, (60, 2)) * (WIDTH, HEIGHT)  # marine snow drifting past the lights
    oy0 = 20 + (abs(drift[1]) * frames if drift[1] < 0 else 0)

    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    meta = ET.SubElement(root, "meta")
    task = ET.SubElement(meta, "task")
    for tag, text in (("id", "1"), ("name", vid), ("size", str(frames)), ("mode", "interpolation"),
                      ("start_frame", "0"), ("stop_frame", str(frames - 1))):
        ET.SubElement(task, tag).text = text
    labels = ET.SubElement(task, "labels")
    for name, (_, cvat_colour) in SPECIES.items():
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "color").text = cvat_colour
    size = ET.SubElement(task, "original_size")
    ET.SubElement(size, "width").text = str(WIDTH)
    ET.SubElement(size, "height").text = str(HEIGHT)
    ET.SubElement(meta, "source").text = f"{vid}.mp4"
    tracks = [ET.SubElement(root, "track", id=str(i), label=a.species, source="manual")
              if a.boxed else None for i, a in enumerate(animals)]
    was_visible = [False] * len(animals)

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v encoder missing)")
    vignette = _vignette()
    try:
        for f in range(frames):
            ox, oy = int(20 + drift[0] * f), int(oy0 + drift[1] * f)
            frame = floor[oy:oy + HEIGHT, ox:ox + WIDTH].copy()
            for i, a in enumerate(animals):
                a.x += a.vx
                a.y += a.vy
                a.angle += a.spin
                cx, cy = a.x - ox, a.y - oy
                dx1, dy1, dx2, dy2 = _extent(a)
                x1, y1 = max(0.0, cx + dx1), max(0.0, cy + dy1)
                x2, y2 = min(float(WIDTH), cx + dx2), min(float(HEIGHT), cy + dy2)
                visible = (x2 - x1) > 0.5 * (dx2 - dx1) and (y2 - y1) > 0.5 * (dy2 - dy1)
                if -60 < cx < WIDTH + 60 and -60 < cy < HEIGHT + 60:
                    _draw_animal(frame, a, cx, cy)
                if tracks[i] is not None and (visible or was_visible[i]):
                    ET.SubElement(tracks[i], "box", frame=str(f), outside="0" if visible else "1",
                                  occluded="0", keyframe="1" if (f % 10 == 0 or not visible) else "0",
                                  xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}",
                                  z_order="0")
                was_visible[i] = visible
            snow = (snow + (0.3, 0.6)) % (WIDTH, HEIGHT)
            for x, y in snow:
                cv2.circle(frame, (int(x), int(y)), 1, (200, 210, 200), -1)
            frame = cv2.GaussianBlur(frame, (3, 3), 0)
            frame = (frame.astype(np.float32) * vignette).astype(np.uint8)
            writer.write(frame)
    finally:
        writer.release()
    for track in tracks:
        if track is not None and len(track) == 0:
            root.remove(track)
    return root


def _vignette() -> np.ndarray:
    """The ROV light falls off towards the corners, with a blue-green cast."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r = np.hypot((x - WIDTH / 2) / WIDTH, (y - HEIGHT / 2) / HEIGHT)
    fall = np.clip(1.15 - 1.2 * r ** 2, 0.35, 1.0)
    return np.stack([fall * 1.05, fall * 1.0, fall * 0.85], axis=-1)


def write_demo_source(folder: str | Path, seed: int = 0, progress: Progress | None = None) -> Path:
    """Write the synthetic DUSIA-layout dataset (cvat_annos/, idd_lsts/, videos/) into ``folder``."""
    folder = Path(folder)
    annos, lists, videos = folder / "cvat_annos", folder / "idd_lsts", folder / "videos"
    for d in (annos, lists, videos):
        d.mkdir(parents=True, exist_ok=True)
    split_ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    frame_lists: dict[str, list[str]] = {"trainkf": [], "valfull": [], "testfull": []}
    for i, (vid, split, frames, step) in enumerate(VIDEOS):
        tree = _write_video(videos / f"{vid}.mp4", vid, frames, seed * 1000 + i, split == "train")
        ET.indent(tree)
        ET.ElementTree(tree).write(annos / f"{vid}.xml", encoding="utf-8", xml_declaration=True)
        # DUSIA's train list lost the leading zeros of its ids; mimic it so the importer is exercised.
        split_ids[split].append(vid.lstrip("0") if split == "train" else vid)
        key = {"train": "trainkf", "val": "valfull", "test": "testfull"}[split]
        frame_lists[key] += [f"{vid}_{f:07d}" for f in range(step, frames - 1, step)]
        if progress:
            progress(i + 1, len(VIDEOS), f"wrote video {vid}")
    for split, ids in split_ids.items():
        (lists / f"{split}_auspec.txt").write_text("\n".join(ids) + "\n")
    for key, lines in frame_lists.items():
        (lists / f"{key}_auspec_cvat_frames.txt").write_text("\n".join(lines) + "\n")
    return folder


def build_demo(folder: str | Path, seed: int = 0, progress: Progress | None = None) -> ImportReport:
    """Create the demo project in ``folder``: its source files in ``folder/dusia``, then imported."""
    folder = Path(folder)
    if (folder / "project.sqlite").exists():
        raise FileExistsError(f"{folder} already holds a project")
    source = write_demo_source(folder / "dusia", seed, progress)
    with Project.create(folder) as project:
        return import_dusia(project, source, videos_dir=source / "videos", progress=progress)


def demo_training(epochs: int = 1, imgsz: int = 160, device: str = "auto") -> TrainConfig:
    """The short training of the demo workflow and of the app's self-test: yolov5n from scratch, both
    drops on (objectness 75 %, box 25 %)."""
    return TrainConfig(epochs=epochs, imgsz=imgsz, batch=16, workers=0, device=device,
                       rebalancing=Rebalancing(p_obj=0.75, p_box=0.25))


def run_pipeline(folder: str | Path, say=print, epochs: int = 1, imgsz: int = 160) -> dict[str, Path]:
    """The whole workflow on the demo project, without a display: build (if needed), train briefly with
    both drops on, detect on the test video, write the counts CSVs. Returns the outputs' paths.

    One short epoch teaches a model from scratch almost nothing: this shows the path, not a result.
    """
    from bpr.results.counts import CountSource, frame_counts, video_summary, write_frame_csv, write_summary_csv
    from bpr.results.detect import detect
    from bpr.learn.training import train

    folder = Path(folder)
    if not (folder / "project.sqlite").exists():
        say(f"building the demo project in {folder}")
        build_demo(folder)
    with Project.open(folder) as project:
        taken = {r.name for r in project.runs()}
        name = next(f"pipeline{n}" for n in range(1, len(taken) + 2) if f"pipeline{n}" not in taken)
        say(f"training {name}: yolov5n, {epochs} epoch(s) at {imgsz} px, objectness drop 75 %, box drop 25 %")
        run = train(project, demo_training(epochs, imgsz), name=name)
        video = project.videos("test")[0]["id"]
        say(f"detecting on test video {video}")
        summary = detect(project, run=name, videos=[video], min_conf=0.0001)
        exports = folder / "exports"
        exports.mkdir(exist_ok=True)
        source = CountSource(run=name, conf=0.0001)
        outputs = {
            "weights": project.resolve_path(run.weights),
            "counts": write_summary_csv(video_summary(project, source), exports / f"{name}-counts.csv"),
            "counts per frame": write_frame_csv(frame_counts(project, source),
                                                exports / f"{name}-counts-per-frame.csv"),
        }
    say(f"detected {summary.detections} boxes on {summary.frames} frames ({summary.fps:.1f} frames/s)")
    for what, path in outputs.items():
        say(f"{what}: {path}")
    return outputs
