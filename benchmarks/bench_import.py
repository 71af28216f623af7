"""Benchmark: import all 16 real DUSIA XMLs into a fresh project (target: under 15 s), and the DB size;
then the same import again into that project, where every box is already there (the same-box check);
then the file check each opening of a project does (Project.check_files) over 20,000 recorded images,
all there and after their folder moved (target: under 0.2 s).

Run: python benchmarks/bench_import.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUSIA = ROOT.parent / "shared" / "data" / "dusia_annotations"


def file_check(repeat: int, images: int = 20_000) -> None:
    """Project.check_files over ``images`` empty image files: all present, then all gone (and marked)."""
    from bpr.data.store import Project

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        with Project.create(Path(tmp) / "p") as project:
            rows = []
            for i in range(images):
                (folder / f"img{i:05d}.jpg").touch()
                rows.append((f"images/img{i:05d}", "image", str(folder / f"img{i:05d}.jpg"), "ok"))
            with project.transaction():
                project.conn.executemany("INSERT INTO videos (id, kind, path, status) VALUES (?, ?, ?, ?)", rows)
            present = []
            for _ in range(repeat):
                start = time.perf_counter()
                project.check_files()
                present.append(time.perf_counter() - start)
            folder.rename(Path(tmp) / "moved")
            start = time.perf_counter()
            gone = len(project.check_files()["gone"])
            moved = time.perf_counter() - start
    print(f"file check on opening, {images} images: all there median {statistics.median(present) * 1000:.0f} ms "
          f"over {repeat} runs; after their folder moved {moved * 1000:.0f} ms ({gone} marked missing) "
          "(target < 0.2 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"command: python benchmarks/bench_import.py --repeat {args.repeat}")
    file_check(args.repeat)
    if not DUSIA.exists():
        print(f"DUSIA import: skipped ({DUSIA} not found; needs the ../shared checkout)")
        return 0
    from bpr.data.formats import import_dusia
    from bpr.data.store import Project

    times, again_times, size, boxes, added_again = [], [], 0, 0, 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            with Project.create(Path(tmp) / "p") as project:
                report = import_dusia(project, DUSIA)
                project.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            times.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in (Path(tmp) / "p").iterdir())
            boxes = report.boxes_added
            start = time.perf_counter()
            with Project.open(Path(tmp) / "p") as project:
                added_again = import_dusia(project, DUSIA).boxes_added
            again_times.append(time.perf_counter() - start)
    print(f"DUSIA import: {len(list(DUSIA.glob('cvat_annos/*.xml')))} XMLs, {boxes} boxes")
    print(f"  time: median {statistics.median(times):.2f} s, min {min(times):.2f} s over {len(times)} runs "
          f"(target < 15 s)")
    print(f"  project size: {size / 1e6:.1f} MB")
    print(f"  again into the same project: median {statistics.median(again_times):.2f} s, "
          f"{added_again} boxes added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
