"""The ultralytics trainer bpr trains with: ultralytics' DetectionTrainer, whose training dataset also
carries ignore regions (bpr.learn.pseudo.add_ignore_rows), and whose batches an online teacher may add
pseudo-boxes and ignore regions to (``trainer.teacher``, set by bpr.learn.training before set-up).

Everything else, the model and the checkpoints included, is ultralytics' own.
"""

from __future__ import annotations

from bpr.offline import configure

configure()  # before ultralytics is imported
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402

from bpr.learn.pseudo import add_ignore_rows  # noqa: E402


class PartialLabelTrainer(DetectionTrainer):
    teacher = None  # a bpr.learn.pseudo.OnlineTeacher, or None

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        dataset = super().build_dataset(img_path, mode, batch)
        if mode == "train":
            add_ignore_rows(dataset)
        return dataset

    def preprocess_batch(self, batch: dict) -> dict:
        batch = super().preprocess_batch(batch)
        if self.teacher is not None and self.model.training:
            batch = self.teacher(self, batch)
        return batch
