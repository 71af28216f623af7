"""The bundled demo project, built offline in seconds: synthetic ROV-like seafloor videos in DUSIA's layout.

A camera drifts over a sandy, murky seafloor texture; invertebrate-like animals of five species sit or
crawl slowly on it. Everything is written as DUSIA ships it (one CVAT video XML per 20-digit video id,
split lists with the leading zeros dropped from the train ids, frame lists) and then imported through
the real DUSIA importer. Training keyframes are *partially* labeled: about 40 % of the animals in the
training videos have no track at all, as in DUSIA. Val/test frames are fully labeled. The generator
knows every animal it drew: ``truth.json`` beside the project holds them all, never as labels, and the
main job (run_pipeline) scores plain training and self-training against it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bpr.config import KEEP_CONF, Rebalancing, SelfTraining, TrainConfig
from bpr.data.formats import import_dusia
from bpr.data.formats.common import ImportReport
from bpr.progress import Progress
from bpr.data.store import Project
from bpr.results.counts import CountSource, frame_counts, video_summary, write_frame_csv, write_summary_csv

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
TRUTH_FILE = "truth.json"
TRUTH_ABOUT = ("every animal the demo drew, per video and frame, boxed or not: [species, x1, y1, x2, y2, boxed] "
               "in pixels, for each animal with more than half of its box in view; boxed is false for the "
               "animals left without a label in the training videos. Never imported as labels: results are "
               "scored against it.")


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
            cv2.line(frame, centre, tip, (120, 70, 200), 2, cv2.LINE_AA)
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
        axes = (int(1.5 * s), int(0.8 * s))
        cv2.ellipse(frame, centre, axes, math.degrees(t), 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(frame, centre, axes, math.degrees(t), 0, 360, (120, 125, 130), 2, cv2.LINE_AA)
        for k in (-0.6, 0.0, 0.6):  # a row of dark papillae along its back
            spot = (int(cx + k * s * math.cos(t)), int(cy + k * s * math.sin(t)))
            cv2.circle(frame, spot, max(2, int(s / 5)), (110, 115, 120), -1, cv2.LINE_AA)
    elif a.species == "Basket star":
        for k in range(5):
            ang = t + k * 2 * math.pi / 5
            mid = (cx + 0.9 * s * math.cos(ang), cy + 0.9 * s * math.sin(ang))
            for curl in (-0.6, 0.6):
                tip = (int(mid[0] + 0.7 * s * math.cos(ang + curl)),
                       int(mid[1] + 0.7 * s * math.sin(ang + curl)))
                cv2.line(frame, (int(mid[0]), int(mid[1])), tip, colour, 3, cv2.LINE_AA)
            cv2.line(frame, centre, (int(mid[0]), int(mid[1])), colour, 4, cv2.LINE_AA)
        cv2.circle(frame, centre, max(3, int(s / 2.5)), colour, -1, cv2.LINE_AA)
    else:  # Yellow gorgonian: a fan from a holdfast, its branches darker
        base = (cx, cy + s)
        tips = []
        for k in range(7):
            ang = -math.pi / 2 + (k - 3) * 0.22 + 0.1 * math.sin(t)
            tips.append((int(base[0] + 2 * s * math.cos(ang)), int(base[1] + 2 * s * math.sin(ang))))
        cv2.fillPoly(frame, [np.array([(int(base[0]), int(base[1])), *tips], np.int32)], colour, cv2.LINE_AA)
        for tip in tips:
            cv2.line(frame, (int(base[0]), int(base[1])), tip, (30, 150, 190), 1, cv2.LINE_AA)


def _extent(a: Animal) -> tuple[float, float, float, float]:
    """The animal's bounding box around its centre (x1, y1, x2, y2 offsets), as an annotator draws it."""
    s = a.size
    if a.species == "fragile pink urchin":
        return -1.6 * s, -1.6 * s, 1.6 * s, 1.6 * s
    if a.species == "Basket star":
        return -1.6 * s, -1.6 * s, 1.6 * s, 1.6 * s
    if a.species == "Yellow gorgonian":
        return -1.5 * s, -1.0 * s, 1.5 * s, 1.0 * s
    # the elongated animals: the rotated ellipse of the body, and for the lobster its claws too
    major, minor = (1.3 * s, 0.6 * s) if a.species == "squat lobster" else (1.5 * s, 0.8 * s)
    c, n = math.cos(a.angle), math.sin(a.angle)
    half_w, half_h = math.hypot(major * c, minor * n), math.hypot(major * n, minor * c)
    x1, y1, x2, y2 = -half_w, -half_h, half_w, half_h
    if a.species == "squat lobster":
        for side in (-1, 1):
            ang = a.angle + side * 0.5
            cx, cy, r = 1.9 * s * math.cos(ang), 1.9 * s * math.sin(ang), max(2, int(s / 3))
            x1, y1, x2, y2 = min(x1, cx - r), min(y1, cy - r), max(x2, cx + r), max(y2, cy + r)
    return x1, y1, x2, y2


def _animals(rng: np.random.Generator, world_w: int, world_h: int, count: int) -> list[Animal]:
    names = list(SPECIES)
    animals = []
    for _ in range(count):
        species = names[rng.integers(len(names))]
        mobile = species in ("fragile pink urchin", "squat lobster", "Basket star")
        speed = 0.25 if mobile else 0.0
        animals.append(Animal(
            species=species, x=rng.uniform(30, world_w - 30), y=rng.uniform(30, world_h - 30),
            size=rng.uniform(13, 20), angle=rng.uniform(0, 2 * math.pi),
            vx=rng.uniform(-speed, speed), vy=rng.uniform(-speed, speed),
            spin=rng.uniform(-0.01, 0.01) if mobile else 0.0))
    return animals


def _write_video(path: Path, vid: str, frames: int, seed: int, partial: bool) -> tuple[ET.Element, dict]:
    """Write one video; return its CVAT 'for video 1.1' annotation tree and its truth: per frame, every
    animal in view (more than half of its box inside the frame), boxed or not."""
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
    truth: dict[str, list] = {}

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
                if visible:
                    truth.setdefault(str(f), []).append(
                        [a.species, round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2), a.boxed])
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
    return root, truth


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
    truth = {"about": TRUTH_ABOUT, "videos": {}}
    for i, (vid, split, frames, step) in enumerate(VIDEOS):
        tree, truth["videos"][vid] = _write_video(videos / f"{vid}.mp4", vid, frames, seed * 1000 + i,
                                                  split == "train")
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
    (folder / TRUTH_FILE).write_text(json.dumps(truth))
    return folder


def build_demo(folder: str | Path, seed: int = 0, progress: Progress | None = None) -> ImportReport:
    """Create the demo project in ``folder``: its source files in ``folder/dusia``, then imported."""
    folder = Path(folder)
    if (folder / "project.sqlite").exists():
        raise FileExistsError(f"{folder} already holds a project")
    source = write_demo_source(folder / "dusia", seed, progress)
    shutil.move(source / TRUTH_FILE, folder / TRUTH_FILE)  # beside the project, away from the annotations
    with Project.create(folder) as project:
        return import_dusia(project, source, videos_dir=source / "videos", progress=progress)


@dataclass(frozen=True)
class Recipe:
    """How the demo's main job trains: small enough to run on a laptop's 2 CPU cores in minutes, and long
    enough for a model from scratch to find the demo's animals. A base run trains first; plain training
    and the method then each go on from its weights for the same further epochs, so that they compare at
    equal compute (the base is the method's teacher)."""

    base_epochs: int = 80
    epochs: int = 30       # each of plain and the method, after the base
    imgsz: int = 192
    batch: int = 8
    lr0: float = 0.004     # AdamW: ultralytics' own choice for so few steps, 0.0011, learns slower
    cls: float = 1.0       # the classification loss's gain (ultralytics: 0.5): the species are told apart sooner

    def config(self, epochs: int, model: str = "yolov5n.yaml", device: str = "cpu") -> TrainConfig:
        return TrainConfig(model=model, epochs=epochs, imgsz=self.imgsz, batch=self.batch, workers=0,
                           device=device, val=False,
                           extra={"optimizer": "AdamW", "lr0": self.lr0, "cls": self.cls})


RECIPE = Recipe()
# The method shown beside plain training: one round of self-training, its teacher the base run.
METHOD = "self-training, 1 round"


def demo_training(epochs: int = 1, imgsz: int = 160, device: str = "auto") -> TrainConfig:
    """The app's self-test's training: a few steps of yolov5n from scratch, both drops on (objectness
    75 %, box 25 %), to check that the pieces work."""
    return TrainConfig(epochs=epochs, imgsz=imgsz, batch=16, workers=0, device=device,
                       rebalancing=Rebalancing(p_obj=0.75, p_box=0.25))


def run_pipeline(folder: str | Path, say=print, recipe: Recipe | None = None) -> dict[str, Path]:
    """The main job on the demo project, without a display: build it (if needed); train plain (the
    partial labels as they are) and one round of self-training (see Recipe); score both against the
    demo's truth (test mAP50, the unboxed training animals each recovered, the counting error on the
    test video at the thresholds chosen on val); write the report and the counts. Returns the outputs'
    paths."""
    from bpr.learn.training import train
    from bpr.results.evaluate import choose_thresholds
    from bpr.selftrain import selftrain

    recipe = recipe or RECIPE
    started = time.perf_counter()
    folder = Path(folder)
    if not (folder / "project.sqlite").exists():
        say(f"building the demo project in {folder}")
        build_demo(folder)
    truth = json.loads((folder / TRUTH_FILE).read_text())
    exports = folder / "exports"
    exports.mkdir(exist_ok=True)
    with Project.open(folder) as project:
        taken = {r.name.split("-")[0] for r in project.runs()}
        name = next(f"demo{n}" for n in range(1, len(taken) + 2) if f"demo{n}" not in taken)
        say(f"training {name}-base: yolov5n from scratch, {recipe.base_epochs} epochs at {recipe.imgsz} px, on the "
            "partial labels as they are")
        def progress(event) -> None:  # a line every tenth of a run
            if event.kind == "epoch" and (event.epoch % max(1, event.epochs // 10) == 0 or event.epoch == event.epochs):
                say(f"  {event.run}: epoch {event.epoch}/{event.epochs}")

        base = train(project, recipe.config(recipe.base_epochs), name=f"{name}-base", on_event=progress)
        start = str(project.resolve_path(base.weights))
        say(f"training {name}-plain: {recipe.epochs} more epochs on the labels")
        plain = train(project, recipe.config(recipe.epochs, model=start), name=f"{name}-plain", on_event=progress)
        say(f"training {name}-r1: {recipe.epochs} more epochs on the labels and the pseudo-boxes {base.name} finds")
        result = selftrain(project, recipe.config(recipe.epochs, model=start), name, SelfTraining(rounds=1, tta=False),
                           from_run=base.name, on_event=progress)
        student = result.runs[-1]
        methods = {"plain": plain.name}
        if student.name != base.name:
            methods[METHOD] = student.name
        else:
            say(f"self-training stopped: {result.stopped_early}")
        for run in methods.values():
            choose_thresholds(project, run, device="cpu")
        video = project.videos("test")[0]["id"]
        report = {"methods": {}, "runs": methods, "recipe": dataclasses.asdict(recipe)}
        for method, run in methods.items():
            say(f"scoring {run} against the demo's truth")
            report["methods"][method] = score_against_truth(project, run, truth, video, pseudo_from=base.name
                                               if method == METHOD else None)
        source = CountSource.for_run(project, methods.get(METHOD, plain.name))
        outputs = {
            "weights": project.resolve_path(project.run(source.run).weights),
            "counts": write_summary_csv(video_summary(project, source, video=video), exports / f"{name}-counts.csv"),
            "counts per frame": write_frame_csv(frame_counts(project, source, video=video),
                                                exports / f"{name}-counts-per-frame.csv"),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    outputs.update(write_report(report, exports))
    say(report_table(report))
    for what, path in outputs.items():
        say(f"{what}: {path}")
    return outputs


def score_against_truth(project: Project, run: str, truth: dict, test_video: str, pseudo_from: str | None) -> dict:
    """A run against the truth: test mAP50; the share of the training frames' unboxed animals it
    recovered (the pseudo-boxes it trained on, or for plain training the finder's suggestions at its
    threshold), matched at IoU >= 0.5 with their species; and, on the test video, the mean absolute
    error per species of MaxN and of the mean count, at the thresholds chosen on val."""
    from bpr.results.detect import detect
    from bpr.results.evaluate import evaluate
    from bpr.results.review import missing_labels

    record = project.run(run)
    test = evaluate(project, project.resolve_path(record.weights), split="test", device="cpu")
    # the unboxed animals of the partial training frames
    partial = {(vid, frame) for vid, frame, _ in project.split_frames("train", ("partial",))}
    unboxed = {(vid, int(f)): [a for a in animals if not a[5]] for vid, frames in truth["videos"].items()
               for f, animals in frames.items() if (vid, int(f)) in partial}
    if pseudo_from is not None:
        found = [(p["video_id"], p["frame_index"], p["species"], (p["x1"], p["y1"], p["x2"], p["y2"]))
                 for p in project.pseudo_boxes(teacher=pseudo_from, kind="pseudo")]
    else:
        step = next(step for _, split, _, step in VIDEOS if split == "train")  # the keyframes' spacing
        detect(project, run=run, videos=sorted({vid for vid, _ in partial}), stride=step, start=step,
               min_conf=KEEP_CONF, device="cpu")
        conf = CountSource.for_run(project, run).conf
        found = [(s.video_id, s.frame_index, s.species, s.box) for s in missing_labels(project, run, conf)]
    recovered = _matched(found, unboxed)
    total = sum(len(v) for v in unboxed.values())
    # counts on the test video against the truth on the same frames
    detect(project, run=run, videos=[test_video], min_conf=KEEP_CONF, device="cpu")
    rows = video_summary(project, CountSource.for_run(project, run), video=test_video)
    frames = truth["videos"][test_video]
    n_frames = project.video(test_video)["frame_count"]
    maxn_error, mean_error = [], []
    for row in rows:
        per_frame = [sum(a[0] == row["species"] for a in frames.get(str(f), [])) for f in range(n_frames)]
        maxn_error.append(abs(row["maxn"] - max(per_frame)))
        mean_error.append(abs(row["mean_count"] - sum(per_frame) / n_frames))
    return {"test_mAP50": round(test.ultralytics["mAP50"], 4),
            "unboxed_recovered": round(recovered / total, 4) if total else None,
            "unboxed_animals": total, "recovered": recovered,
            "maxn_abs_error": round(sum(maxn_error) / len(maxn_error), 3) if maxn_error else None,
            "mean_count_abs_error": round(sum(mean_error) / len(mean_error), 3) if mean_error else None}


def _matched(found: list[tuple], truth: dict[tuple[str, int], list]) -> int:
    """How many truth animals the found boxes match: per frame and species, IoU >= 0.5, one to one,
    most confident first as the lists come."""
    from bpr.results.evaluate import ImageResult, greedy_hits

    by_frame: dict[tuple[str, int], list] = {}
    for vid, frame, species, box in found:
        by_frame.setdefault((vid, frame), []).append((species, box))
    names = {name: i for i, name in enumerate(SPECIES)}
    hits = 0
    for key, here in by_frame.items():
        animals = truth.get(key, [])
        if not animals:
            continue
        image = ImageResult(gt_boxes=np.array([a[1:5] for a in animals], float),
                            gt_classes=np.array([names[a[0]] for a in animals]),
                            boxes=np.array([box for _, box in here], float),
                            scores=np.linspace(1, 0, len(here), endpoint=False),
                            classes=np.array([names.get(species, -1) for species, _ in here]))
        hits += int(greedy_hits(image, 0.5)[2].sum())
    return hits


TIE = 0.02  # test mAP50: one seed's difference under this is no finding either way
REPORT_COLUMNS = {"test_mAP50": "test mAP50", "unboxed_recovered": "unboxed animals recovered",
                  "maxn_abs_error": "MaxN error", "mean_count_abs_error": "mean-count error"}


def report_table(report: dict) -> str:
    """The report as a markdown table, with what it says."""
    lines = ["| method | " + " | ".join(REPORT_COLUMNS.values()) + " |", "|---" * (len(REPORT_COLUMNS) + 1) + "|"]
    for method, scores in report["methods"].items():
        cells = []
        for key in REPORT_COLUMNS:
            value = scores[key]
            cells.append("–" if value is None else f"{value:.0%}" if key == "unboxed_recovered" else f"{value:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    methods = report["methods"]
    if METHOD in methods:
        gain = methods[METHOD]["test_mAP50"] - methods["plain"]["test_mAP50"]
        if abs(gain) < TIE:
            verdict = f"{METHOD} ties with plain training on the demo ({gain:+.3f} test mAP50, one seed)"
        elif gain > 0:
            verdict = f"{METHOD} beats plain training by {gain:.3f} test mAP50 on the demo (one seed)"
        else:
            verdict = f"{METHOD} does not beat plain training on the demo ({gain:+.3f} test mAP50, one seed)"
    else:
        verdict = "self-training found nothing to add: only plain training is shown"
    recipe = report["recipe"]
    return "\n".join(lines + ["", f"{verdict}. Both went on for {recipe['epochs']} epochs from one base run of "
                              f"{recipe['base_epochs']} (the method's teacher). Errors are mean absolute errors "
                              f"per species on the test video, against the demo's truth. "
                              f"{report['seconds']:.0f} s in all."])


def write_report(report: dict, folder: Path) -> dict[str, Path]:
    """report.json, report.md and report.png (a panel per figure, a bar per method) in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {"report": folder / "report.json", "report table": folder / "report.md",
             "report plot": folder / "report.png"}
    paths["report"].write_text(json.dumps(report, indent=1))
    paths["report table"].write_text(report_table(report) + "\n")
    fig, axes = plt.subplots(1, len(REPORT_COLUMNS), figsize=(3 * len(REPORT_COLUMNS), 3))
    methods = list(report["methods"])
    for ax, (key, title) in zip(axes, REPORT_COLUMNS.items()):
        values = [report["methods"][m][key] or 0 for m in methods]
        ax.bar(range(len(methods)), values, color=["#7f7f7f", "#1f77b4"][:len(methods)])
        ax.set_xticks(range(len(methods)), [m.replace(", ", ",\n") for m in methods], fontsize=8)
        ax.set_title(title + (" (lower is better)" if "error" in key else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["report plot"], dpi=100)
    plt.close(fig)
    return paths
