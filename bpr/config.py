"""The typed settings of training and of BPR: the app edits them, the CLI fills them, the trainer reads them.

Kept free of torch and ultralytics so that the app and the CLI can build a configuration without the
seconds those imports take.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODES = ("random", "confident")
PRECISIONS = ("auto", "full")

# Detection stores boxes at or above this confidence, for the CLI and the app alike: low, because
# counts and review choose their own threshold later, and the app's slider starts at 0.01.
KEEP_CONF = 0.01

# ultralytics train() arguments the trainer sets itself (from the fields below, or fixed so that runs
# stay offline and reproducible): TrainConfig.extra may not override them.
MANAGED_TRAIN_ARGS = frozenset({
    "model", "data", "epochs", "imgsz", "batch", "device", "seed", "deterministic", "workers", "patience",
    "val", "plots", "amp", "pretrained", "project", "name", "exist_ok", "verbose", "resume"})


@dataclass
class Rebalancing:
    """What BPR drops. The defaults drop nothing."""

    p_obj: float = 0.0          # fraction of negatives dropped from the classification/objectness BCE
    p_box: float = 0.0          # fraction of low-IoU positives dropped from the box loss
    neg_iou: float = 0.3        # IoU below which a prediction counts as negative (Faster R-CNN's rule)
    mode: str = "random"        # "random" (the paper) or "confident" (highest-scoring first)
    partial_only: bool = True   # drop only in images whose frame is partially labeled
    seed: int = 0               # seed of the drop generator

    def __post_init__(self):
        for name in ("p_obj", "p_box", "neg_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, not {value}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")

    @property
    def active(self) -> bool:
        return self.p_obj > 0 or self.p_box > 0


@dataclass
class TrainConfig:
    """Everything a training run needs; the CLI fills it from flags, the app from its panel."""

    model: str = "yolov5n.yaml"   # an ultralytics model YAML (from scratch) or a local .pt file
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    device: str = "auto"          # "auto" (first CUDA device, else CPU), "cpu", "cuda", "cuda:N" or "N"
    seed: int = 0
    rebalancing: Rebalancing = field(default_factory=Rebalancing)
    species: list[str] | None = None   # species to train on (default: all marked for training)
    hide_fraction: float = 0.0    # hide this fraction of training boxes (partial-label benchmarks)
    protocol: str = "dusia"       # which labeled frames each split takes: "dusia" or "all-labeled"
    workers: int = 2              # data-loading processes
    patience: int = 100           # epochs without improvement before early stopping
    val: bool = True              # validate after each epoch (the final epoch always validates)
    # "auto": bf16 mixed precision on a GPU that has it; "full": fp32 everywhere (TF32 off), the arithmetic
    # the CPU always uses, so that runs trained on a GPU and on CPUs compare
    precision: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # further ultralytics train() arguments

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: use {' or '.join(PRECISIONS)}")
        managed = sorted(MANAGED_TRAIN_ARGS & set(self.extra))
        if managed:
            raise ValueError(f"{', '.join(managed)}: set by the trainer (or by its own option), "
                             "not as a further ultralytics argument")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        data["rebalancing"] = Rebalancing(**data.get("rebalancing", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


