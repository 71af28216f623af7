"""Benchmark: the README's main job, `bpr-app --headless` on a new demo project, timed from the command to
its exit (targets: <= 5 minutes on 2 CPU cores, the plain model's test mAP50 >= 0.6).

It builds the demo, trains plain and one round of self-training, scores both against the demo's
truth, detects on the test video and writes the report and the counts (bpr.demo.run_pipeline). The
figures are the report's own (exports/report.json).

Run: python benchmarks/bench_demo.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    app = shutil.which("bpr-app", path=os.path.dirname(sys.executable))
    if app is None:
        print("bpr-app is not installed beside this Python: pip install -e . first")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = subprocess.run([app, "--headless", str(Path(tmp) / "demo")], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stdout + result.stderr)
            return 1
        report = json.loads((Path(tmp) / "demo" / "exports" / "report.json").read_text())
    print("command: python benchmarks/bench_demo.py")
    print(f"cores: {os.cpu_count()}; `bpr-app --headless` on a new demo project: {seconds:.0f} s from the command "
          f"to its exit (target <= 300 s)")
    for method, scores in report["methods"].items():
        print(f"  {method}: test mAP50 {scores['test_mAP50']:.3f}, unboxed animals recovered "
              f"{scores['unboxed_recovered']:.0%}, MaxN error {scores['maxn_abs_error']:.2f}, mean-count error "
              f"{scores['mean_count_abs_error']:.3f}")
    print(f"  plain test mAP50 {report['methods']['plain']['test_mAP50']:.3f} (target >= 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
