"""A DUSIA-shaped detection run for the benchmarks: 30-minute videos at 30 fps (54,000 frames), every
5th frame detected, detections spread at random over the frames and 10 species, confidences uniform.
The videos have no files: only the store is read."""

from __future__ import annotations

FRAMES_PER_VIDEO = 54_000
STRIDE = 5


def add_synthetic_run(project, videos: list[str], detections: int, name: str = "bench", seed: int = 0):
    """Store a finished run named ``name`` with ``detections`` random boxes over ``videos``.

    Returns the detected ``(video, frame)`` pairs and, per detection, the index of its pair.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    frames = [(v, f) for v in videos for f in range(0, FRAMES_PER_VIDEO, STRIDE)]
    with project.transaction() as conn:
        conn.executemany("INSERT INTO videos (id, fps, frame_count) VALUES (?, 30.0, ?)",
                         [(v, FRAMES_PER_VIDEO) for v in videos])
        species = [project.species_id(f"species {k}") for k in range(10)]
        run = project.create_run(name, {})
        conn.execute("UPDATE runs SET status = 'finished', weights = 'none.pt' WHERE id = ?", (run,))
        conn.executemany("INSERT INTO detected_frames VALUES (?, ?, ?)", [(run, v, f) for v, f in frames])
        picks, kinds, confs = (rng.integers(0, len(frames), detections), rng.integers(0, 10, detections),
                               rng.random(detections))
        conn.executemany(
            "INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, confidence) "
            "VALUES (?, ?, ?, ?, 0, 0, 10, 10, ?)",
            ((run, *frames[i], species[k], float(c)) for i, k, c in zip(picks, kinds, confs)))
    return frames, picks
