"""Put plausible bugs into a copy of the code, one at a time, and report which the tests catch.

    python scripts/mutation_check.py             # every mutation (about 5 minutes on 2 cores)
    python scripts/mutation_check.py --list      # their names
    python scripts/mutation_check.py neg_iou_boundary partial_inverted

Each mutation is a bug someone could write: a transaction committed early, a bound made inclusive, a
threshold changed. It is applied to a fresh copy of the working tree, and the test files that should
catch it are run there (stopping at the first failure). A mutation the tests pass is a hole in the
suite. This is a check to run by hand before trusting the suite with a large change; it is not part
of CI. Exit status: the number of mutations that survived.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Mutation:
    name: str
    file: str
    edits: list[tuple[str, str]]   # (text, replacement): each text must occur exactly once in the file
    tests: list[str]               # test files (or node ids) that should catch it


MUTATIONS = [
    # -- crash safety (bpr/data/store.py, bpr/data/formats/common.py)
    Mutation("import_commits_each_chunk", "bpr/data/formats/common.py", [(
        "            if progress:\n                progress(min(start + chunk",
        "            conn.execute('COMMIT')\n            conn.execute('BEGIN IMMEDIATE')\n"
        "            if progress:\n                progress(min(start + chunk")],
        ["tests/bpr/test_reliability.py"]),
    Mutation("add_box_commits_every_20", "bpr/data/store.py", [
        ("        with self.transaction():\n            species_id = species if isinstance(species, int) "
         "else self.species_id(species)\n",
         "        species_id = species if isinstance(species, int) else self.species_id(species)\n"
         "        self._unsaved = getattr(self, '_unsaved', 0) + 1\n"
         "        if not self.conn.in_transaction:\n            self.conn.execute('BEGIN IMMEDIATE')\n"
         "        if True:\n"),
        ("                (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, source, time.time()),\n"
         "            )\n",
         "                (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, source, time.time()),\n"
         "            )\n        if self._unsaved % 20 == 0:\n            self.conn.execute('COMMIT')\n")],
        ["tests/bpr/test_reliability.py"]),
    Mutation("transaction_commits_on_error", "bpr/data/store.py", [(
        '                self.conn.execute("ROLLBACK")', '                self.conn.execute("COMMIT")')],
        ["tests/bpr/test_store.py", "tests/bpr/test_fuzz_importers.py"]),
    # -- partial frames only, the default
    Mutation("partial_inverted", "bpr/learn/loss.py", [(
        "[n in self.partial_images for n in names]", "[n not in self.partial_images for n in names]")],
        ["tests/bpr/test_loss.py"]),
    Mutation("export_marks_every_train_frame_partial", "bpr/data/dataset.py", [(
        'if split == "train" and status == "partial":', 'if split == "train":')],
        ["tests/bpr/test_dataset.py", "tests/bpr/test_loss.py"]),
    Mutation("partial_only_ignored", "bpr/learn/loss.py", [(
        "if not self.settings.partial_only or self.partial_images is None",
        "if True or self.partial_images is None")],
        ["tests/bpr/test_loss.py"]),
    # -- the drops
    Mutation("draw_5_percent_low", "bpr/learn/loss.py", [(
        "(draw.to(candidates.device) < fraction)", "(draw.to(candidates.device) < fraction * 0.95)")],
        ["tests/bpr/test_loss.py"]),
    Mutation("drops_not_limited_to_candidates", "bpr/learn/loss.py", [(
        "return candidates & (draw.to(candidates.device) < fraction)", "return draw.to(candidates.device) < fraction")],
        ["tests/bpr/test_loss.py"]),
    # -- pseudo-boxes
    Mutation("mining_takes_a_label_at_iou_0_5_as_new", "bpr/learn/pseudo.py", [(
        ".amax(-1) < MATCH_IOU", ".amax(-1) <= MATCH_IOU")],
        ["tests/bpr/test_pseudo.py"]),
    Mutation("rejected_pseudo_boxes_used_again", "bpr/learn/pseudo.py", [(
        "for others in (labels, rejected):", "for others in (labels,):")],
        ["tests/bpr/test_pseudo.py"]),
    Mutation("calibration_misses_a_precision_reached_exactly", "bpr/learn/pseudo.py", [(
        "[np.asarray(precision) >= target]", "[np.asarray(precision) > target]")],
        ["tests/bpr/test_evaluate.py"]),
    Mutation("teacher_calibrated_on_dusia_val_frames_whatever_the_protocol", "bpr/selftrain.py", [(
        'project.readable_frames("val", PROTOCOLS[protocol]["val"])', 'project.readable_frames("val", ("full",))')],
        ["tests/bpr/test_pseudo.py::test_a_teacher_is_calibrated_on_the_val_frames_of_its_protocol"]),
    Mutation("weighted_pseudo_box_box_loss_at_full_weight", "bpr/learn/loss.py", [(
        "pred_distri, pred_bboxes, anchor_points, target_bboxes / stride_tensor, box_scores,",
        "pred_distri, pred_bboxes, anchor_points, target_bboxes / stride_tensor, target_scores,")],
        ["tests/bpr/test_loss.py"]),
    Mutation("weighted_pseudo_boxes_exported_as_plain_labels", "bpr/data/dataset.py", [(
        "                if not pseudo_weighted:\n                    lines += extra",
        "                lines += extra")],
        ["tests/bpr/test_pseudo.py"]),
    Mutation("neg_iou_boundary", "bpr/learn/loss.py", [(
        "candidates = ~fg_mask & (best < s.neg_iou) & applies",
        "candidates = ~fg_mask & (best <= s.neg_iou) & applies")],
        ["tests/bpr/test_loss.py"]),
    Mutation("box_drop_boundary", "bpr/learn/loss.py", [(
        "candidates = fg_mask & (iou < s.neg_iou) & applies", "candidates = fg_mask & (iou <= s.neg_iou) & applies")],
        ["tests/bpr/test_loss.py"]),
    Mutation("foreground_can_be_dropped", "bpr/learn/loss.py", [(
        "candidates = ~fg_mask & (best < s.neg_iou) & applies", "candidates = (best < s.neg_iou) & applies")],
        ["tests/bpr/test_loss.py"]),
    Mutation("dropped_during_validation", "bpr/learn/loss.py", [(
        "        if not torch.is_grad_enabled():\n            return super()",
        "        if False:\n            return super()")],
        ["tests/bpr/test_loss.py"]),
    Mutation("ignore_band_bound_strict", "bpr/learn/loss.py", [(
        "(pairwise_iou(pred_pixels, ignore).amax(-1) >= s.neg_iou)",
        "(pairwise_iou(pred_pixels, ignore).amax(-1) > s.neg_iou)")],
        ["tests/bpr/test_loss.py"]),
    Mutation("ignore_band_hits_foreground", "bpr/learn/loss.py", [(
        "ignored = ~fg_mask & applies & (pairwise_iou", "ignored = applies & (pairwise_iou")],
        ["tests/bpr/test_loss.py"]),
    Mutation("ignore_band_everywhere", "bpr/learn/loss.py", [(
        "ignored = ~fg_mask & applies & (pairwise_iou", "ignored = ~fg_mask & (pairwise_iou")],
        ["tests/bpr/test_loss.py"]),
    # -- evaluation
    Mutation("pr_iou_0_3", "bpr/results/evaluate.py", [(
        "def precision_recall_at(images: list[ImageResult], conf: float, iou: float = 0.5)",
        "def precision_recall_at(images: list[ImageResult], conf: float, iou: float = 0.3)")],
        ["tests/bpr/test_evaluate.py"]),
    Mutation("pr_iou_strict", "bpr/results/evaluate.py", [(
        "(ious[d] >= iou))[0]", "(ious[d] > iou))[0]")],
        ["tests/bpr/test_evaluate.py"]),
    Mutation("ultralytics_map50_95_is_map50", "bpr/results/evaluate.py", [(
        '"mAP50-95": float(ultra_ap.mean()) if len(ultra_ap) else 0.0',
        '"mAP50-95": float(ultra_ap[:, 0].mean()) if len(ultra_ap) else 0.0')],
        ["tests/bpr/test_evaluate.py"]),
    Mutation("per_class_coco_map50_95_is_map50", "bpr/results/evaluate.py", [(
        '"coco_mAP50-95": float(coco[:, ci].mean())', '"coco_mAP50-95": float(coco[0, ci])')],
        ["tests/bpr/test_evaluate.py"]),
    Mutation("per_class_ultralytics_map50_at_0_55", "bpr/results/evaluate.py", [(
        '"ultralytics_mAP50": float(ultra_by_class.get(c, np.zeros(10))[0])',
        '"ultralytics_mAP50": float(ultra_by_class.get(c, np.zeros(10))[1])')],
        ["tests/bpr/test_evaluate.py"]),
    # -- counts
    Mutation("count_threshold_strict", "bpr/results/counts.py", [(
        "AND d.confidence >= {threshold}", "AND d.confidence > {threshold}")],
        ["tests/bpr/test_counts.py"]),
    Mutation("per_species_threshold_ignored", "bpr/results/counts.py", [(
        "    if not source.species_conf:\n", "    if True:\n")],
        ["tests/bpr/test_counts.py"]),
    # -- importers
    Mutation("non_finite_coordinates_accepted", "bpr/data/formats/common.py", [(
        '        if any(v != v or v in (float("inf"), float("-inf")) for v in values):\n'
        '            raise LabelFormatError(f"{self.file}: {where}: box coordinates are not finite: {values}")\n', "")],
        ["tests/bpr/test_fuzz_importers.py", "tests/bpr/test_formats_cvat.py", "tests/bpr/test_formats_yolo.py",
         "tests/bpr/test_formats_coco.py", "tests/bpr/test_formats_viame.py"]),
    # -- the oracle, resuming, mining at a size (2026-12-07)
    Mutation("oracle_ignores_the_hidden_boxes_of_full_frames_too", "bpr/data/dataset.py", [(
        "                if hidden_as_ignore and (vid, frame) in partial:\n",
        "                if hidden_as_ignore:\n")],
        ["tests/bpr/test_dataset.py"]),
    Mutation("resume_ignores_a_changed_epochs", "bpr/cli.py", [(
        '             if o.name != "device" and getattr(args, o.name) not in (o.default, [])]',
        '             if o.name not in ("device", "epochs") and getattr(args, o.name) not in (o.default, [])]')],
        ["tests/bpr/test_cli.py::test_train_and_runs"]),
    Mutation("mining_ignores_the_size_asked", "bpr/selftrain.py", [(
        "    size = inference_size(model, imgsz)\n", "    size = inference_size(model)\n")],
        ["tests/bpr/test_pseudo.py::test_a_teacher_mines_at_the_size_asked_and_its_record_says_so"]),
    Mutation("app_resume_ignores_the_device_chosen", "app/train_panel.py", [(
        '        self.worker.kwargs["device"] = device\n', '        self.worker.kwargs["device"] = None\n')],
        ["tests/app/test_review_train.py::test_resume_goes_on_on_the_device_chosen_or_else_the_one_the_run_trained_on"]),
    Mutation("ema_calibration_counts_precision_past_the_top_score", "bpr/learn/pseudo.py", [(
        "        detected = (precision < 1) | (recall > 0)\n", "        detected = np.ones_like(precision, bool)\n")],
        ["tests/bpr/test_pseudo.py::test_the_ema_teacher_reads_its_pseudo_box_score_off_each_validation"]),
    Mutation("unfinished_run_restored_on_other_labels", "bpr/experiment.py", [(
        '    if _train_labels_checksum(project, name) != saved["train_labels_sha256"]:\n', '    if False:\n')],
        ["tests/bpr/test_experiment.py::test_a_run_whose_machine_was_lost_goes_on_from_the_epoch_kept_in_the_sweep"]),
    Mutation("unfinished_run_trained_again_from_the_start", "bpr/experiment.py", [(
        '        if status is None and (unfinished / "last.pt").exists():', '        if False:')],
        ["tests/bpr/test_experiment.py::test_a_run_whose_machine_was_lost_goes_on_from_the_epoch_kept_in_the_sweep"]),
    # -- the Qt-free library
    Mutation("qt_imported_at_run_time", "bpr/results/counts.py", [(
        "    ids, sequences = _scope(project, video)\n    counted, params = _counted_cte(project, source, ids)\n",
        "    __import__('importlib').import_module('PySide6.QtCore')\n"
        "    ids, sequences = _scope(project, video)\n    counted, params = _counted_cte(project, source, ids)\n")],
        ["tests/test_layering.py"]),
]


def copy_tree(destination: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), without .git or the venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def apply(mutation: Mutation, tree: Path) -> None:
    path = tree / mutation.file
    text = path.read_text()
    for old, new in mutation.edits:
        found = text.count(old)
        if found != 1:
            raise SystemExit(f"{mutation.name}: the text to change occurs {found} times in {mutation.file}, "
                             f"not once; update the mutation:\n{old}")
        text = text.replace(old, new)
    path.write_text(text)


def run(mutation: Mutation, timeout: float) -> tuple[bool, str, float]:
    """(caught, the first failing test or why not, seconds)."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        apply(mutation, tree)
        # The copy's modules come first, in this process's children and in theirs.
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                     *mutation.tests], cwd=tree, env=env, capture_output=True, text=True,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            return True, f"the tests ran past {timeout:.0f} s (a hang counts as caught)", time.time() - started
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE)
    if result.returncode == 0:
        return False, "every test passed", time.time() - started
    if failed:
        return True, failed[0], time.time() - started
    return True, f"pytest exited {result.returncode}: {result.stdout.strip().splitlines()[-1:]}", time.time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutation (default 900)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"no mutation named {', '.join(sorted(unknown))} (see --list)")
    if args.list:
        for m in chosen:
            print(f"{m.name:40} {m.file:28} {' '.join(m.tests)}")
        return 0
    survived = []
    for m in chosen:
        caught, why, seconds = run(m, args.timeout)
        print(f"{'caught  ' if caught else 'SURVIVED'} {m.name:40} {seconds:5.0f} s  {why}", flush=True)
        if not caught:
            survived.append(m.name)
    print(f"\n{len(chosen) - len(survived)} of {len(chosen)} mutations caught"
          + (f"; survived: {', '.join(survived)}" if survived else ""))
    print(f"command: python scripts/mutation_check.py {' '.join(args.names)}".rstrip())
    return len(survived)


if __name__ == "__main__":
    sys.exit(main())
