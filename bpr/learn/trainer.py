"""The ultralytics trainer bpr trains with: ultralytics' DetectionTrainer, which sets up the run's
partial-label learning itself, from the run's record in the project.

Everything a process training a bpr run needs is read here, by the trainer, from the run folder
ultralytics is given (``project=<project>/runs/<run>``): the run's config from the store, its partially
labeled images from its export's manifest. The trainer installs BPR's criterion during its own set-up
(and again at an epoch start if ultralytics rebuilt the model, after a resume or a NaN recovery), gives
each training batch to an online (EMA) teacher, and carries the ignore regions and weighted
pseudo-boxes in its dataset (bpr.learn.pseudo.add_teacher_rows). Nothing comes through a callback, so
ultralytics' DDP launcher, which rebuilds the trainer from its class and its arguments in every rank,
gets all of it in each rank (bpr.learn.training attaches a rank's progress and recording there).

Everything else, the model and the checkpoints included, is ultralytics' own. Outside a bpr run folder
the trainer is ultralytics' DetectionTrainer with those rows read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from bpr.offline import configure

configure()  # before ultralytics is imported
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils.torch_utils import unwrap_model  # noqa: E402

from bpr.config import TrainConfig  # noqa: E402
from bpr.learn.loss import DropStats, build_criterion, criterion_stats  # noqa: E402
from bpr.learn.pseudo import OnlineTeacher, add_teacher_rows  # noqa: E402


def ddp_rank() -> int | None:
    """This process's rank if torch.distributed.run started it (as ultralytics' DDP launcher does), else
    None. (ultralytics' own RANK says -1 in a world of one rank.)"""
    return int(os.environ["RANK"]) if "LOCAL_RANK" in os.environ and "RANK" in os.environ else None


@dataclasses.dataclass
class PartialLabels:
    """One process's partial-label learning for a run: its settings, its partially labeled images,
    the drop counts its criterion reports to and its online teacher."""

    project_folder: Path
    run: str
    config: TrainConfig
    partial_images: set[str]
    stats: DropStats
    teacher: OnlineTeacher | None = None

    @classmethod
    def of_run_folder(cls, folder: str | Path) -> PartialLabels | None:
        """The partial-label learning of the bpr run whose folder this is, or None if it is not one."""
        from bpr.data.store import DB_NAME, NotFoundError, Project
        from bpr.learn.training import export_manifest

        folder = Path(folder)
        if folder.parent.name != "runs" or not (folder.parent.parent / DB_NAME).is_file():
            return None
        with Project.open(folder.parent.parent) as project:
            try:
                record = project.run(folder.name)
            except NotFoundError:
                return None
            config = TrainConfig.from_dict(record.config)
            partial = set(json.loads(export_manifest(project, folder.name).read_text())["partial_images"])
        teacher = None
        if config.pseudo.teacher == "ema":  # a resumed run starts from its last validation's score
            read = [m["teacher"].get("calibrated", m["teacher"].get("pseudo_conf"))
                    for m in record.metrics if "teacher" in m]
            teacher = OnlineTeacher(config.pseudo, partial, calibrated=read[-1] if read else None)
        return cls(folder.parent.parent, folder.name, config, partial, DropStats(), teacher)

    def install(self, trainer) -> None:
        """Put BPR's criterion on the trainer's model (a plain ultralytics DetectionModel)."""
        settings = self.config.rebalancing
        # A resumed run continues with fresh draws rather than replaying the first epochs' draws; each
        # rank of a DDP run draws its own (rank 0 draws as a single process would).
        settings = dataclasses.replace(settings, seed=settings.seed + 1_000_003 * trainer.start_epoch
                                       + 7_919 * (ddp_rank() or 0))
        model = unwrap_model(trainer.model)
        model.criterion = build_criterion(model, settings, self.stats, self.partial_images)

    def start_epoch(self, trainer) -> None:
        """Re-install the criterion if the model lost it, and start the epoch's counts."""
        from bpr.learn.training import match_optimizer_state_layout

        if criterion_stats(getattr(unwrap_model(trainer.model), "criterion", None)) is not self.stats:
            self.install(trainer)
        self.stats.reset()
        if self.teacher is not None:
            self.teacher.reset()
        # Before the first step of a resumed run (or after ultralytics reloads last.pt to recover from NaN).
        match_optimizer_state_layout(trainer.optimizer)


class PartialLabelTrainer(DetectionTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.partial = PartialLabels.of_run_folder(self.args.project) if self.args.project else None
        if self.partial is not None and ddp_rank() is not None:  # started by ultralytics' DDP launcher
            from bpr.learn.training import attach_rank

            attach_rank(self)

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        dataset = super().build_dataset(img_path, mode, batch)
        if mode == "train":
            add_teacher_rows(dataset)
        return dataset

    def _setup_train(self):
        super()._setup_train()
        if self.partial is not None:
            self.partial.install(self)

    def _model_train(self):
        """ultralytics' start of each epoch (and of a NaN recovery)."""
        super()._model_train()
        if self.partial is not None and self.optimizer is not None:
            self.partial.start_epoch(self)

    def validate(self):
        """ultralytics' validation of the EMA model, which calibrates the EMA teacher's pseudo-box score
        (rank 0 reads it, and a DDP run's other ranks are told)."""
        metrics, fitness = super().validate()
        teacher = self.partial.teacher if self.partial is not None else None
        if teacher is not None and teacher.settings.pseudo_conf is None:
            if metrics is not None:
                teacher.calibrate(self.validator.metrics.box)
            teacher.share_calibration(self.device)
        return metrics, fitness

    def preprocess_batch(self, batch: dict) -> dict:
        batch = super().preprocess_batch(batch)
        teacher = self.partial.teacher if self.partial is not None else None
        if teacher is not None and self.model.training:
            batch = teacher(self, batch)
        return batch
