"""The Review panel: detection, confidence, counts, the missing-label finder and the pseudo-boxes'
review; detection runs in a child process."""

from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.panels import beside, fit_columns, list_tree, names_give_way, wrapped_label
from app.frame_view import confidence_text
from app.species import species_icon
from app.text import tip
from app.state import ProjectState
from app.workers import ChildCrashed, Worker, in_child_process
from bpr.config import KEEP_CONF
from bpr.results.counts import shown_per_frame
from bpr.data.store import Project


def _detect_child(folder: str, options: dict, send, stop):
    """In the detection process: ``bpr.results.detect.detect(project, **options)``, sending progress back as
    ("progress", done, total, message)."""
    from bpr.results.detect import detect

    with Project.open(folder) as project:
        return detect(project, cancel=stop.is_set, **options,
                      progress=lambda done, total, message: send(("progress", done, total, message)))


def detect_job(folder: str, options: dict, progress, stop):
    """Detection in a child process: loading the model held the GIL for up to 640 ms at a time, and the
    window froze while it did. ``options`` are bpr.results.detect.detect's (run or weights, videos, ...)."""
    try:
        return in_child_process(_detect_child, (folder, options), stop, lambda message: progress(*message[1:]),
                                name="bpr-detection")
    except ChildCrashed as e:
        raise RuntimeError(f"the detection process ended unexpectedly ({e}); detecting again resumes "
                           "where it stopped") from None


VIDEO_COUNTS = "This video (double-click: jump to the MaxN frame)"
NUMBER_ALIGNMENT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
COUNT_MEANINGS = ["", "MaxN: the most animals of the species counted in one frame (image)",
                  "the first frame (image) that counts MaxN", "animals counted per frame (image) looked at",
                  "frames (images) in which the species is counted at least once"]


def _image_name(image_id: str) -> str:
    """An image's id without its folder, which the panel's heading names."""
    return image_id.rsplit("/", 1)[-1]


class ReviewPanel(QWidget):
    """Pick a run, detect on the current video, set the confidence, read counts, find missing labels."""

    def __init__(self, state: ProjectState, show_error, parent=None):
        super().__init__(parent)
        self.state, self.show_error = state, show_error
        self.worker: Worker | None = None
        self.detecting = False
        self.suggestions = []
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.run = QComboBox()
        self.run.currentTextChanged.connect(self._run_chosen)
        form.addRow("Run", self.run)
        self.not_learned = wrapped_label("")  # a warning, shown for a run that has not learned
        self.not_learned.setStyleSheet("color: #d08000")
        self.not_learned.hide()
        form.addRow(self.not_learned)
        detect_row = QHBoxLayout()
        self.stride = QSpinBox(minimum=1, maximum=1000, value=1)
        self.stride.setPrefix("every ")
        self.stride.setSuffix(" frame(s)")
        self.detect_button = QPushButton("Detect on this video")
        self.detect_button.clicked.connect(lambda: self.detect())
        self.detect_all_button = QPushButton("On all")
        self.detect_all_button.setToolTip(tip("detect on every readable video (or image) of the project; frames "
                                          "this run has done already are skipped"))
        self.detect_all_button.clicked.connect(lambda: self.detect(everything=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: self.worker and self.worker.request_stop())
        self.cancel_button.setEnabled(False)
        detect_row.addWidget(self.detect_button)
        detect_row.addWidget(self.detect_all_button)
        detect_row.addWidget(self.cancel_button)
        form.addRow("Frames", self.stride)
        form.addRow(detect_row)
        self.keep = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=0.99, singleStep=0.01, value=KEEP_CONF)
        self.keep.setToolTip(tip("detection stores boxes at or above this confidence; the slider below "
                             "then filters what is shown and counted"))
        form.addRow("Keep detections ≥", self.keep)
        self.cluster = QLineEdit()
        self.cluster.setPlaceholderText("none: detect here")
        self.cluster.setToolTip(tip("detect in shards on a Ray cluster (pip install \"bpr-detect[cluster]\"): its "
                                    "address (ray://head:10001, or auto), or local for a Ray on this machine; empty: "
                                    "detect in one process here. Either way this project stores the detections."))
        form.addRow("Ray cluster", self.cluster)
        self.progress = QProgressBar(visible=False)  # shown while detecting
        form.addRow(self.progress)
        self.conf = QSlider(Qt.Orientation.Horizontal, minimum=1, maximum=99, value=round(state.conf * 100))
        self.conf_spin = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=0.99, singleStep=0.01,
                                        value=state.conf)
        self.conf_spin.setToolTip("detections at or above this confidence are shown and counted")
        self.conf.valueChanged.connect(lambda v: self.conf_spin.setValue(v / 100))
        self.conf_spin.valueChanged.connect(self._conf_changed)
        form.addRow("Confidence", beside(self.conf, self.conf_spin))
        layout.addLayout(form)

        self.frame_counts_label = QLabel("This frame")
        layout.addWidget(self.frame_counts_label)
        self.frame_counts = list_tree(["Species", "Count"])
        self.frame_counts.setMaximumHeight(110)
        names_give_way(self.frame_counts)
        layout.addWidget(self.frame_counts)
        self.video_counts_label = wrapped_label(VIDEO_COUNTS)
        layout.addWidget(self.video_counts_label)
        self.video_counts = list_tree(["Species", "MaxN", "Frame", "Mean", "Present"])
        for column, meaning in enumerate(COUNT_MEANINGS):
            self.video_counts.headerItem().setToolTip(column, meaning)
            if column:  # the numbers line up by their units, under their headers
                self.video_counts.headerItem().setTextAlignment(column, NUMBER_ALIGNMENT)
        names_give_way(self.video_counts)
        self.video_counts.itemDoubleClicked.connect(self._jump_maxn)
        layout.addWidget(self.video_counts)

        layout.addWidget(wrapped_label("Missing-label finder: the pseudo-boxes of the next self-training round, "
                                  "and confident detections on partial frames that overlap no label. "
                                  "Confidence above sets the least score; A accepts, R rejects."))
        self.finder_species = QComboBox()
        self.finder_species.setToolTip("list the suggestions of one species only")
        self.finder_species.currentIndexChanged.connect(lambda _: self.refresh_all())
        finder_form = QFormLayout()
        finder_form.addRow("Species", self.finder_species)
        layout.addLayout(finder_form)
        self.missing = list_tree(["Frame", "Score", "Species"])  # the species last: its text is the longest
        self.missing.itemSelectionChanged.connect(self._suggestion_selected)
        layout.addWidget(self.missing)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept as label")
        self.accept_button.clicked.connect(self.accept)
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(self.reject)
        row.addWidget(self.accept_button)
        row.addWidget(self.reject_button)
        layout.addLayout(row)

        self.scope: str | None = None  # what the counts and the finder cover: a video, or an image folder
        state.projectChanged.connect(self.reload_runs)
        state.videoChanged.connect(self._video_changed)
        state.detectionsChanged.connect(self.refresh_all)
        state.confChanged.connect(self.refresh_frame)
        state.confSettled.connect(self.refresh_all)
        state.labelsChanged.connect(self.refresh_all)
        state.frameChanged.connect(self.refresh_frame)

    def reload_runs(self):
        self.scope = None  # the project changed (an import may have added images): count again
        names = [r.name for r in self.state.project.runs() if r.weights]
        self.run.blockSignals(True)
        self.run.clear()
        self.run.addItems(names)
        if names:  # keep the chosen run; else the newest
            self.run.setCurrentText(self.state.run if self.state.run in names else names[-1])
        self.run.blockSignals(False)
        self._run_chosen(self.run.currentText())
        self._detect_buttons()

    def _run_chosen(self, name: str) -> None:
        """The chosen run: its warning if it has not learned, and the threshold chosen on its val frames."""
        record = self.state.project.run(name) if name else None
        if record is not None and record.not_learned:
            self.not_learned.setText(f"This run has not learned (best val mAP50 {record.best_map50:.4f}): its "
                                     "detections and the finder's suggestions are noise.")
        self.not_learned.setVisible(record is not None and record.not_learned)
        chosen = (record.summary or {}).get("thresholds") if record is not None else None
        if chosen and name != self.state.run:
            self.conf_spin.setValue(max(chosen["overall"], self.conf_spin.minimum()))
        self.state.set_run(name or None)

    def _detect_buttons(self, detecting: bool | None = None) -> None:
        if detecting is not None:
            self.detecting = detecting
            self.progress.setValue(0)
            self.progress.setVisible(detecting)
        can_start = self.run.count() > 0 and not self.detecting
        self.detect_button.setEnabled(can_start)
        self.detect_all_button.setEnabled(can_start)
        self.cancel_button.setEnabled(self.detecting)

    def _conf_changed(self, value: float):
        self.conf.blockSignals(True)
        self.conf.setValue(round(value * 100))
        self.conf.blockSignals(False)
        self.state.set_conf(value)

    def detect(self, everything: bool = False):
        """On the current video (or the current image's folder), or with ``everything`` on all of the
        project's."""
        if not self.state.run or not (everything or self.state.video) or self.detecting:
            return
        record = self.state.project.run(self.state.run)
        if record.not_learned and QMessageBox.question(
                self, "Detect with a model that has not learned?",
                f"Run {record.name} has not learned: its best val mAP50 is {record.best_map50:.4f}. Its detections, "
                "its counts and the finder's suggestions would be noise. Detect anyway?") \
                != QMessageBox.StandardButton.Yes:
            return
        sequence = self.state.image_sequence()
        videos = None if everything else (list(sequence.frames) if sequence else [self.state.video["id"]])
        self.worker = Worker(detect_job, str(self.state.project.folder),
                             dict(run=self.state.run, videos=videos, stride=self.stride.value(),
                                  min_conf=self.keep.value(), ray=self.cluster.text().strip() or None))
        self.worker.progress.connect(lambda done, total, _: (self.progress.setMaximum(max(total, 1)),
                                                              self.progress.setValue(done)))
        self.worker.finished.connect(self._detected)
        self.worker.failed.connect(self._failed)
        self.worker.start()
        self._detect_buttons(detecting=True)

    def _detected(self, summary):
        self._detect_buttons(detecting=False)
        state = "stopped" if summary.cancelled else "done"
        self.state.statusMessage.emit(f"detection {state}: {summary.frames} frames, {summary.detections} "
                                      f"detections, {summary.fps:.1f} frames/s")
        self.state.reload()
        self.state.detectionsChanged.emit()

    def _failed(self, message, details):
        self._detect_buttons(detecting=False)
        self.show_error("Detection failed", message, details)

    def refresh_frame(self, *_):
        s = self.state
        counts = {} if s.video is None else shown_per_frame(
            s.project, [s.video["id"]], s.run, s.conf, frame=s.frame).get((s.video["id"], s.frame), {})
        self.frame_counts.clear()
        colors = s.species_colors()
        for name, n in sorted(counts.items()):
            item = QTreeWidgetItem([name, str(n)])
            item.setIcon(0, species_icon(colors.get(name)))  # the legend of the boxes' colours
            item.setToolTip(0, name)  # whole, where the dock cuts it short
            self.frame_counts.addTopLevelItem(item)

    def _video_changed(self, video_id: str):
        """Another image of the same folder keeps the folder's counts and suggestions (and the one
        chosen): only this frame's counts change."""
        sequence = self.state.image_sequence()
        if (sequence.name if sequence else video_id) == self.scope:
            self.refresh_frame()
        else:
            self.refresh_all()

    def refresh_all(self, *_):
        """Counts and suggestions of the current video, or of the current image's folder: in an image set
        each image is one item, and MaxN and the unboxed animals are looked for across its folder."""
        from bpr.results.counts import CountSource, video_summary
        from bpr.results.review import missing_labels, pseudo_suggestions

        self.refresh_frame()
        chosen = self._current_suggestion()
        self.video_counts.clear()
        self.missing.blockSignals(True)  # refilling must not select (and jump to) a suggestion
        self.missing.clear()
        self.suggestions = []
        self.scope = None
        if not self.state.video:
            self.missing.blockSignals(False)
            return
        vid = self.state.video["id"]
        sequence = self.state.image_sequence()
        self.scope = sequence.name if sequence else vid
        self.detect_button.setText("Detect on this folder" if sequence else "Detect on this video")
        self.frame_counts_label.setText("This image" if sequence else "This frame")
        self.video_counts_label.setText(
            f"This image folder: {sequence.name}, {len(sequence.images)} images (double-click: go to the "
            "MaxN image)" if sequence else VIDEO_COUNTS)
        self.video_counts.headerItem().setText(2, "Image" if sequence else "Frame")
        self.missing.headerItem().setText(0, "Image" if sequence else "Frame")
        source = CountSource(run=self.state.run, conf=self.state.conf)
        colors = self.state.species_colors()
        target = sequence or vid  # the folder already looked up: the library need not list it again
        for row in video_summary(self.state.project, source, video=target):
            where = (_image_name(row["maxn_image"]) if sequence else str(row["maxn_frame"])) \
                if row["maxn_frame"] is not None else ""
            item = QTreeWidgetItem([row["species"], str(row["maxn"]), where, f"{row['mean_count']:.3f}",
                                    str(row["frames_present"])])
            item.setData(0, Qt.ItemDataRole.UserRole, (row["maxn_image"], row["maxn_frame"]))
            for column in range(1, len(COUNT_MEANINGS)):
                item.setTextAlignment(column, NUMBER_ALIGNMENT)
            item.setIcon(0, species_icon(colors.get(row["species"])))
            item.setToolTip(0, row["species"])
            self.video_counts.addTopLevelItem(item)
        # the pseudo-boxes waiting for review first: the next self-training round trains on them
        self.suggestions = pseudo_suggestions(self.state.project, video=target)
        if self.state.run:
            self.suggestions += missing_labels(self.state.project, self.state.run, self.state.conf, video=target)
        self._list_finder_species()
        only = self.finder_species.currentData()
        if only is not None:
            self.suggestions = [x for x in self.suggestions if x.species == only]
        for s in self.suggestions:
            where = _image_name(s.video_id) if sequence else str(s.frame_index)
            species = s.species if s.pseudo_id is None else f"{s.species} (pseudo-box, round {s.round})"
            self.missing.addTopLevelItem(QTreeWidgetItem([where, confidence_text(s.confidence), species]))
        fit_columns(self.missing)
        # keep the suggestion being looked at chosen, if it is still one
        index = next((i for i, s in enumerate(self.suggestions) if chosen is not None
                      and (s.detection_id, s.pseudo_id) == (chosen.detection_id, chosen.pseudo_id)), None)
        self.missing.setCurrentItem(None if index is None else self.missing.topLevelItem(index))
        self.missing.blockSignals(False)
        if index is None:
            self.state.set_highlight(None)
        self.accept_button.setEnabled(index is not None)
        self.reject_button.setEnabled(index is not None)

    def _list_finder_species(self) -> None:
        """All species, and each species of the project, keeping the one chosen."""
        chosen = self.finder_species.currentData()
        names = [s["name"] for s in self.state.project.species()]
        if [self.finder_species.itemData(i) for i in range(1, self.finder_species.count())] != names:
            self.finder_species.blockSignals(True)
            self.finder_species.clear()
            self.finder_species.addItem("All species", None)
            for species in self.state.project.species():
                self.finder_species.addItem(species_icon(species["color"]), species["name"], species["name"])
            self.finder_species.setCurrentIndex(max(0, self.finder_species.findData(chosen)))
            self.finder_species.blockSignals(False)

    def jump_to_maxn(self, species: str) -> bool:
        for i in range(self.video_counts.topLevelItemCount()):
            item = self.video_counts.topLevelItem(i)
            if item.text(0) == species:
                self._jump_maxn(item)
                return True
        return False

    def _jump_maxn(self, item, *_):
        image, frame = item.data(0, Qt.ItemDataRole.UserRole)
        if image is not None:
            self.state.set_video(image)
        elif frame is not None:
            self.state.set_frame(frame)

    def _go_to(self, suggestion) -> None:
        if suggestion.video_id != self.state.video["id"]:
            self.state.set_video(suggestion.video_id)
        self.state.set_frame(suggestion.frame_index)

    def _current_suggestion(self):
        index = self.missing.indexOfTopLevelItem(self.missing.currentItem()) if self.missing.currentItem() else -1
        return self.suggestions[index] if 0 <= index < len(self.suggestions) else None

    def _suggestion_selected(self):
        s = self._current_suggestion()
        self.accept_button.setEnabled(s is not None)
        self.reject_button.setEnabled(s is not None)
        if s is not None:
            self._go_to(s)
            self.state.set_highlight(s.video_id, s.frame_index, s.box)
        else:
            self.state.set_highlight(None)

    def accept(self):
        s = self._current_suggestion()
        if s is not None:
            self._go_to(s)
            self._review(s, self.state.accept_suggestion)

    def reject(self):
        s = self._current_suggestion()
        if s is not None:
            self._review(s, self.state.reject_suggestion)

    def review_key(self, accept: bool) -> None:
        """A or R: review the chosen suggestion; with none chosen, choose the first."""
        if self._current_suggestion() is None:
            if self.missing.topLevelItemCount():
                self.missing.setCurrentItem(self.missing.topLevelItem(0))
            return
        self.accept() if accept else self.reject()

    def _review(self, suggestion, act) -> None:
        """Accept or reject (undoably), then go on to the next suggestion: the queue advances by itself."""
        index = self.suggestions.index(suggestion)
        act(suggestion)  # the finder refills: the suggestion reviewed is no longer one
        if self.suggestions:
            self.missing.setCurrentItem(self.missing.topLevelItem(min(index, len(self.suggestions) - 1)))
