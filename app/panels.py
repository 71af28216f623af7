"""The side panels: Labels (draw, edit, frame status, undo), Train (rebalancing, pseudo-labels, live
progress), Review (detection, confidence, counts, the missing-label finder and the pseudo-boxes' review)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.frame_view import confidence_text
from app.species import SpeciesDialog, ask_new_species, species_icon
from app.text import tip
from app.state import ProjectState
from app.workers import ChildCrashed, Worker, in_child_process
from bpr.config import KEEP_CONF, Option, SelfTraining, TrainConfig, from_flat, options
from bpr.results.counts import shown_per_frame
from bpr.data.store import Project
from bpr.learn.training import describe_method, trained_on

MODELS = ["yolov5n.yaml", "yolov5s.yaml", "yolo11n.yaml", "yolo11s.yaml"]
# The training options the Train panel offers, in the order of their description (bpr.config); the
# command line has them all.
PANEL_OPTIONS = ("model", "epochs", "imgsz", "batch", "device", "workers", "p_obj", "p_box", "neg_iou",
                 "partial_only", "pseudo_conf", "ignore_conf", "pseudo_boxes", "burn_in", "rounds", "tta")
LIST_MIN_HEIGHT = 90  # a header and three rows
# The Train panel's methods: how the unboxed animals of partial frames are treated.
METHODS = {"labels": "Labels only", "ema": "EMA teacher", "selftrain": "Self-training"}


def _wrapped(text: str) -> QLabel:
    """A label that wraps, and never asks for more width than the dock has."""
    label = QLabel(text)
    label.setWordWrap(True)
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)  # as tall as its lines at the width it gets: never drawn under a list
    label.setSizePolicy(policy)
    label.setMinimumWidth(0)
    return label


def _tree(headers: list[str]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setMinimumHeight(LIST_MIN_HEIGHT)  # a short window scrolls the panel rather than squash a list
    tree.setHeaderLabels(headers)
    tree.setRootIsDecorated(False)
    tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    return tree


def _fit_columns(tree: QTreeWidget, grow_only: bool = False) -> None:
    """Size each column but the last (which stretches) to what it holds: Qt's default widths cut
    species names short in the narrow dock, with room to spare in the number columns. A list
    refilled on every frame only widens, so that its columns stay put while a video plays."""
    for column in range(tree.columnCount() - 1):
        before = tree.columnWidth(column)
        tree.resizeColumnToContents(column)
        if grow_only and tree.columnWidth(column) < before:
            tree.setColumnWidth(column, before)


def with_number_entry(slider: QSlider, suffix: str = "") -> tuple[QWidget, QSpinBox]:
    """A slider with a number entry beside it, each following the other: a value can be typed, not only
    dragged to (it took seven drags to reach 75 % / 25 %)."""
    entry = QSpinBox(minimum=slider.minimum(), maximum=slider.maximum(), value=slider.value(), suffix=suffix)
    slider.valueChanged.connect(entry.setValue)
    entry.valueChanged.connect(slider.setValue)
    return _beside(slider, entry), entry


def _beside(main: QWidget, other: QWidget) -> QWidget:
    """One form row: ``main`` taking the width, ``other`` at its right."""
    row_widget = QWidget()
    row = QHBoxLayout(row_widget)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(main, 1)
    row.addWidget(other)
    return row_widget


# ---------------------------------------------------------------------------------------------------
class LabelPanel(QWidget):
    """Draw, relabel and delete boxes on the current frame; mark the frame partial/full/none."""

    drawToggled = Signal(object)    # species name, or None to stop drawing

    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.selected: dict | None = None
        self._boxes_fitted = False
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.species = QComboBox()  # not editable: a key typed into it must never make a species
        self.species.setToolTip("Species for new boxes and for relabelling; its colour is its boxes' colour")
        self.add_species_button = QPushButton("Add species...")
        self.add_species_button.setToolTip("Add a species to the project (asks you to confirm)")
        self.add_species_button.clicked.connect(self._add_species)
        self.manage_species_button = QPushButton("Manage species...")
        self.manage_species_button.setToolTip("Rename, merge or delete species")
        self.manage_species_button.clicked.connect(self._manage_species)
        form.addRow("Species", self.species)  # a row of its own: long names show whole
        species_buttons = QHBoxLayout()
        species_buttons.addWidget(self.add_species_button)
        species_buttons.addWidget(self.manage_species_button)
        form.addRow("", species_buttons)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.draw = QPushButton("Draw box (B)")
        self.draw.setCheckable(True)
        self.draw.toggled.connect(self._draw_toggled)
        self.relabel = QPushButton("Relabel")
        self.relabel.clicked.connect(self._relabel)
        self.delete = QPushButton("Delete")
        self.delete.clicked.connect(self._delete)
        for b in (self.draw, self.relabel, self.delete):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        status_box = QGroupBox("This frame is labeled")
        status_layout = QHBoxLayout(status_box)
        self.status_group = QButtonGroup(self)
        self.status_buttons = {}
        for status, meaning in (("none", "not a labeled frame"),
                                ("partial", "some animals may be unboxed (training keyframes)"),
                                ("full", "every animal of the listed species is boxed (val/test)")):
            button = QRadioButton(status)
            button.setToolTip(meaning)
            self.status_group.addButton(button)
            self.status_buttons[status] = button
            status_layout.addWidget(button)
        self.status_group.buttonClicked.connect(lambda b: self.state.set_frame_status(b.text()))
        layout.addWidget(status_box)
        self.unused_hint = _wrapped("These boxes are not used for training or evaluation until the frame "
                                    "is marked partial or full.")
        self.unused_hint.setStyleSheet("color: #d08a2c")
        layout.addWidget(self.unused_hint)

        undo = QHBoxLayout()
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(state.undo.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(state.undo.redo)
        state.undo.canUndoChanged.connect(self.undo_button.setEnabled)
        state.undo.canRedoChanged.connect(self.redo_button.setEnabled)
        undo.addWidget(self.undo_button)
        undo.addWidget(self.redo_button)
        layout.addLayout(undo)
        # Where a box is shows on the frame; its size in pixels fits the dock, where four corner columns did not
        self.boxes = _tree(["Species", "Source", "Size"])
        layout.addWidget(QLabel("Boxes on this frame"))
        layout.addWidget(self.boxes)
        self.undo_button.setEnabled(False)
        self.redo_button.setEnabled(False)
        state.projectChanged.connect(self._project_changed)
        state.speciesChanged.connect(self.reload_species)
        state.frameChanged.connect(self.refresh)
        state.labelsChanged.connect(self.refresh)
        self.set_selected(None)

    def _project_changed(self):
        self._boxes_fitted = False  # another project's names: the box list fits afresh
        self.reload_species()

    def reload_species(self, select: str | None = None):
        current = select or self.species.currentText()
        self.species.clear()
        for species in self.state.project.species():
            self.species.addItem(species_icon(species["color"]), species["name"])
        if current:
            self.species.setCurrentText(current)

    def _add_species(self):
        name = ask_new_species(self, self.state)
        if name:
            self.reload_species(select=name)

    def _manage_species(self):
        SpeciesDialog(self.state, self).exec()

    def refresh(self, *_):
        status = self.state.frame_status()
        self.status_buttons[status].setChecked(True)
        self.boxes.clear()
        labels = self.state.labels()
        # CVAT tracks put boxes on frames between keyframes; only marked frames reach a dataset.
        self.unused_hint.setVisible(status == "none" and bool(labels))
        colors = self.state.species_colors()
        for b in labels:
            item = QTreeWidgetItem([b["species"], b["source"], f"{b['x2'] - b['x1']:.0f}×{b['y2'] - b['y1']:.0f}"])
            item.setToolTip(2, f"x1 {b['x1']:.1f}, y1 {b['y1']:.1f}, x2 {b['x2']:.1f}, y2 {b['y2']:.1f}")
            item.setIcon(0, species_icon(colors.get(b["species"])))
            self.boxes.addTopLevelItem(item)
        _fit_columns(self.boxes, grow_only=self._boxes_fitted)
        self._boxes_fitted = True

    def set_selected(self, box: dict | None):
        self.selected = box
        self.relabel.setEnabled(box is not None)
        self.delete.setEnabled(box is not None)

    def current_species(self) -> str:
        return self.species.currentText()

    def _draw_toggled(self, on: bool):
        species = self.current_species() if on else None
        if on and not species:
            self.draw.setChecked(False)
            self.state.statusMessage.emit("add a species (Add species...) before drawing")
            return
        self.drawToggled.emit(species)

    def _relabel(self):
        if self.selected and self.current_species():
            self.state.relabel_box(self.selected["id"], self.current_species())

    def _delete(self):
        if self.selected:
            self.state.delete_box(self.selected["id"])
            self.set_selected(None)


# ---------------------------------------------------------------------------------------------------
class Curves(QWidget):
    """Training loss and val mAP50 against the epoch, on two plots with axes (pyqtgraph): per batch while a
    run trains, per epoch for a finished run picked in the list. The plots are made when first shown:
    importing pyqtgraph takes a third of a second, which the window's opening need not wait for."""

    PLACEHOLDER = "loss and val mAP50 show here: start training, or pick a run below"
    LOSS_COLOR, MAP50_COLOR = "#e0a040", "#50c080"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss: tuple[list[float], list[float]] = ([], [])    # epoch (fractional while training), loss
        self.map50: tuple[list[float], list[float]] = ([], [])   # epoch, val mAP50
        self.plots = None  # (loss curve, mAP50 curve, widget), once shown
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.placeholder = _wrapped(self.PLACEHOLDER)
        self.layout_.addWidget(self.placeholder)
        self.setMinimumHeight(180)

    def showEvent(self, event):
        super().showEvent(event)
        if self.plots is None:
            self._make_plots()
            self._redraw()

    def _make_plots(self):
        import pyqtgraph as pg

        widget = pg.GraphicsLayoutWidget()
        widget.setBackground("#1b2026")
        loss_plot = widget.addPlot(row=0, col=0)
        map_plot = widget.addPlot(row=1, col=0)
        for plot, label in ((loss_plot, "loss"), (map_plot, "val mAP50")):
            plot.setLabel("left", label)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
        map_plot.setLabel("bottom", "epoch")
        map_plot.setXLink(loss_plot)
        map_plot.setYRange(0, 1, padding=0.02)
        loss_curve = loss_plot.plot(pen=pg.mkPen(self.LOSS_COLOR, width=1.5))
        map_curve = map_plot.plot(pen=pg.mkPen(self.MAP50_COLOR, width=1.5), symbol="o", symbolSize=4,
                                  symbolBrush=self.MAP50_COLOR)
        self.plots = (loss_curve, map_curve, widget)
        self.layout_.addWidget(widget, 1)

    def _redraw(self):
        empty = not self.loss[0] and not self.map50[0]
        self.placeholder.setVisible(empty)
        if self.plots is not None:
            loss_curve, map_curve, widget = self.plots
            widget.setVisible(not empty)
            loss_curve.setData(*self.loss)
            map_curve.setData(*self.map50)

    def clear(self):
        self.loss, self.map50 = ([], []), ([], [])
        self._redraw()

    def add_batch(self, epoch: int, batch: int, batches: int, loss: float):
        self.loss[0].append(epoch - 1 + batch / max(batches, 1))
        self.loss[1].append(loss)
        self._redraw()

    def add_epoch(self, epoch: int, map50: float):
        self.map50[0].append(epoch)
        self.map50[1].append(map50)
        self._redraw()

    def show_epochs(self, metrics: list[dict]):
        """A stored run's per-epoch records: the summed training losses and the val mAP50."""
        epochs = [m.get("epoch", i + 1) for i, m in enumerate(metrics)]
        self.loss = (list(epochs), [sum(v for k, v in m.items() if k.endswith("_loss")) for m in metrics])
        validated = [(e, m["mAP50"]) for e, m in zip(epochs, metrics) if "mAP50" in m]
        self.map50 = ([e for e, _ in validated], [v for _, v in validated])
        self._redraw()


def _train_child(folder: str, config: TrainConfig | None, name: str | None, resume: str | None,
                 selftrain: tuple[SelfTraining, bool] | None, send, stop):
    """In the training process: train (or run self-training rounds), sending each event back, and a
    cancel as ("cancelled", message)."""
    from bpr.learn.training import TrainEvent, TrainingCancelled, train
    from bpr.results.evaluate import choose_thresholds

    on_event = lambda e: send(("event", e))  # noqa: E731
    try:
        with Project.open(folder) as project:
            if selftrain is not None:
                from bpr.selftrain import selftrain as rounds

                settings, pause = selftrain
                result = rounds(project, config, name, settings, pause_for_review=pause, on_event=on_event,
                                cancel=stop.is_set)
                finished = [r for r in result.runs if r.status == "finished"]
            else:
                result = train(project, config, name=name, resume=resume, on_event=on_event, cancel=stop.is_set)
                finished = [result]
            for run in finished:  # the counting thresholds, chosen on val
                if "thresholds" not in (run.summary or {}):
                    on_event(TrainEvent("note", run.name, message=f"choosing {run.name}'s counting thresholds "
                                                                   "on its val frames"))
                    choose_thresholds(project, run.name, device=run.config.get("device", "auto"))
            return result
    except TrainingCancelled as e:
        send(("cancelled", str(e)))
        return None


class TrainingCrashed(Exception):
    """The training process ended without reporting an outcome (killed, out of memory, segfault)."""


def train_job(folder: str, config: TrainConfig | None, name: str | None, resume: str | None,
              progress, stop, on_event, on_process=None, selftrain: tuple[SelfTraining, bool] | None = None):
    """Supervise training in a child process, so the GUI's event loop never waits on the training's GIL
    and a hard crash cannot take the app down. Stop is cooperative: the child stops at the end of its
    batch, resumable from last.pt."""
    from bpr.learn.training import TrainingCancelled

    run_name, cancelled = [resume], []

    def on_message(message):
        if message[0] == "event":
            run_name[0] = message[1].run
            on_event(message[1])
        elif message[0] == "cancelled":
            cancelled.append(message[1])

    try:
        run = in_child_process(_train_child, (folder, config, name, resume, selftrain), stop, on_message,
                               name="bpr-training", on_process=on_process)
    except ChildCrashed as e:
        reason = f"the training process ended unexpectedly ({e}); the run can be resumed from its last epoch"
        if run_name[0]:  # the child could not record its end: do it for it
            with Project.open(folder) as project:
                project.update_run(run_name[0], status="failed", error=reason, finished=time.time())
        raise TrainingCrashed(reason) from None
    if cancelled:
        raise TrainingCancelled(cancelled[0])
    return run


def _scroll_into_view(widget: QWidget) -> None:
    """Scroll the panel's scroll area (app.window.scrolling), if it has one, to show ``widget``."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    if parent is not None:
        parent.ensureWidgetVisible(widget, 0, 0)


def _find_devices(progress, stop):
    import torch

    return device_choices(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                          torch.cuda.get_device_name)


def device_choices(count: int, name_of) -> list[str]:
    """The device drop-down's GPU entries: each GPU, and with several all of them (DDP training)."""
    choices = [f"cuda:{i} ({name_of(i)})" for i in range(count)]
    if count > 1:
        choices.append(f"{','.join(map(str, range(count)))} (all {count} GPUs, DDP)")
    return choices


class TrainPanel(QWidget):
    """Model, schedule, device and the rebalancing controls; Start / Stop / Resume; live progress."""

    def __init__(self, state: ProjectState, show_error, parent=None):
        super().__init__(parent)
        self.state, self.show_error = state, show_error
        self.worker: Worker | None = None
        self.process = None  # the training process while one runs
        self._device_worker: Worker | None = None
        self._listed_folder = None  # the project whose runs are listed
        layout = QVBoxLayout(self)
        # The widgets come from the settings' descriptions (bpr.config): the defaults, ranges, choices
        # and tooltips are those of `bpr train --help`. Each is this panel's attribute of the option's name.
        self._options = [o for o in options(TrainConfig) if o.name in PANEL_OPTIONS]
        self._selftrain_options = [o for o in options(SelfTraining) if o.name in PANEL_OPTIONS]
        form = QFormLayout()
        bpr_box = QGroupBox("Box Prediction Rebalancing")
        bpr_form = QFormLayout(bpr_box)
        pseudo_box = QGroupBox("Pseudo-labels")
        pseudo_form = QFormLayout(pseudo_box)
        self.method = QComboBox()
        for key, text in METHODS.items():
            self.method.addItem(text, key)
        self.method.setToolTip(tip("How the animals nobody boxed are learned. Labels only: train on the labels (with "
                               "any BPR drop). EMA teacher: after the burn-in, the model's "
                               "running average finds the unboxed animals of each batch. Self-training: each "
                               "round's teacher is the round before; its pseudo-boxes can be reviewed between "
                               "rounds in the Review panel's finder."))
        self.method.currentIndexChanged.connect(self._method_changed)
        pseudo_form.addRow("Method", self.method)
        groups = {"rebalancing": bpr_form, "pseudo-labels": pseudo_form, "self-training": pseudo_form}
        for o in self._options + self._selftrain_options:
            widget, shown = self._option_widget(o)
            setattr(self, o.name, widget)
            target = groups.get(o.group, form)
            if isinstance(widget, QCheckBox):
                target.addRow(shown)
            else:
                target.addRow(o.label, shown)
        self.pause_for_review = QCheckBox("Pause for review")
        self.pause_for_review.setChecked(True)
        self.pause_for_review.setToolTip(tip("after a teacher finds a round's pseudo-boxes, wait: accept or reject "
                                         "them in the Review panel's finder, then press Continue rounds"))
        pseudo_form.addRow(self.pause_for_review)
        layout.addLayout(form)
        layout.addWidget(bpr_box)
        layout.addWidget(pseudo_box)
        self._selftrain: tuple | None = None  # (config, name, settings) of the rounds waiting for review

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume)
        self.continue_button = QPushButton("Continue rounds", visible=False)
        self.continue_button.setToolTip("train the round whose pseudo-boxes you have reviewed, and go on")
        self.continue_button.clicked.connect(self.continue_rounds)
        for b in (self.start_button, self.stop_button, self.resume_button, self.continue_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.progress = QProgressBar(visible=False)  # shown while training: idle, it is an empty box
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.drop = _wrapped("")  # wraps: a long line would widen the dock and shrink the frame
        self.curves = Curves()
        for w in (self.progress, self.status, self.drop, self.curves):
            layout.addWidget(w)
        self.runs = _tree(["Run", "Status", "Best val mAP50", "Epochs", "Method", "Trained on"])  # the score
        # first: the dock is narrow
        self.runs.itemSelectionChanged.connect(self._update_buttons)
        self.runs.currentItemChanged.connect(self._show_run_curves)
        layout.addWidget(self.runs, 1)
        state.projectChanged.connect(self.reload_runs)
        self._method_changed()
        self._update_buttons()

    def _method_changed(self, *_):
        """Only the settings of the chosen method are enabled."""
        method = self.method.currentData()
        for name in ("pseudo_conf", "ignore_conf", "pseudo_boxes"):
            getattr(self, name).setEnabled(method != "labels")
        self.burn_in.setEnabled(method == "ema")
        for widget in (self.rounds, self.tta, self.pause_for_review):
            widget.setEnabled(method == "selftrain")

    def _option_widget(self, o: Option) -> tuple[QWidget, QWidget]:
        """(the widget holding the option's value, what the form shows: the widget, or a row with it)."""
        if o.name == "model":
            widget = QComboBox()
            widget.setEditable(True)
            widget.addItems(MODELS)
            widget.setCurrentText(o.default)
            browse = QPushButton("Local .pt...")
            browse.clicked.connect(self._browse)
            shown = _beside(widget, browse)
        elif o.name == "device":  # the CUDA devices found are added later
            widget = QComboBox()
            widget.addItems(["auto", "cpu"])
            widget.setCurrentText(o.default)
            shown = widget
        elif o.kind is bool:
            widget = shown = QCheckBox(o.label)
            widget.setChecked(o.default)
        elif o.choices is not None:
            widget = shown = QComboBox()
            widget.addItems(list(o.choices))
            widget.setCurrentText(o.default)
        elif o.percent:
            widget = QSlider(Qt.Orientation.Horizontal, minimum=round(o.low * 100), maximum=round(o.high * 100),
                             value=round(o.default * 100))
            shown, entry = with_number_entry(widget, " %")
            setattr(self, f"{o.name}_entry", entry)
        elif o.kind is float:
            widget = shown = QDoubleSpinBox(minimum=o.low, maximum=o.high, singleStep=o.step or 0.01, value=o.default)
        else:
            widget = shown = QSpinBox(minimum=int(o.low), maximum=int(o.high), singleStep=int(o.step or 1),
                                      value=o.default)
        widget.setToolTip(tip(o.help[:1].upper() + o.help[1:] + "."))
        return widget, shown

    def _option_value(self, o: Option):
        widget = getattr(self, o.name)
        if o.name == "device":
            return widget.currentText().split(" ")[0]  # "cuda:0 (NVIDIA ...)"
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            return widget.currentText().strip()
        if o.percent:
            return widget.value() / 100
        return widget.value()

    def find_devices(self):
        """List CUDA devices (imports torch, so on a worker, after the window is up)."""
        self._device_worker = Worker(_find_devices)
        self._device_worker.finished.connect(
            lambda devices: self.device.addItems([d for d in devices if self.device.findText(d) < 0]))
        self._device_worker.start()

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Weights", "", "PyTorch weights (*.pt)")
        if path:
            self.model.setCurrentText(path)

    def config(self) -> TrainConfig:
        values = {o.name: self._option_value(o) for o in self._options}
        values["teacher"] = "ema" if self.method.currentData() == "ema" else "none"
        return from_flat(TrainConfig, values)

    def selftrain_settings(self) -> SelfTraining:
        return from_flat(SelfTraining, {o.name: self._option_value(o) for o in self._selftrain_options})

    def running(self) -> bool:
        return self.worker is not None and self.worker.thread.isRunning()

    def start(self, config: TrainConfig | None = None):
        config = config or self.config()
        if self.method.currentData() == "selftrain":
            taken = {r.name.rsplit("-r", 1)[0] for r in self.state.project.runs()}
            name = next(f"selftrain{n}" for n in range(1, len(taken) + 2) if f"selftrain{n}" not in taken)
            self._selftrain = (config, name, self.selftrain_settings())
            self.continue_rounds()
            return
        self._launch(config, None)

    def continue_rounds(self):
        """Self-training: train (or go on with) the rounds started last."""
        if self._selftrain is None:
            return
        config, name, settings = self._selftrain
        self.continue_button.hide()
        self._launch(config, None, selftrain=(name, settings, self.pause_for_review.isChecked()))

    def resume(self):
        item = self.runs.currentItem()
        if item is not None:
            self._launch(None, item.text(0))

    def _launch(self, config: TrainConfig | None, resume: str | None, selftrain: tuple | None = None):
        """Train, resume, or (``selftrain``: name, settings, pause for review) run self-training rounds."""
        from bpr.learn.training import TrainingCancelled

        if self.running():
            return
        self.curves.clear()
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText("starting (loading PyTorch and ultralytics)...")
        QTimer.singleShot(0, lambda: _scroll_into_view(self.curves))  # the settings above may fill the view
        name, rounds = (None, None) if selftrain is None else (selftrain[0], selftrain[1:])
        self.worker = Worker(train_job, str(self.state.project.folder), config, name, resume,
                             cancel_exceptions=(TrainingCancelled,))
        self.worker.kwargs["selftrain"] = rounds
        self.worker.kwargs["on_event"] = self.worker.emitter()
        self.worker.kwargs["on_process"] = lambda process: setattr(self, "process", process)
        self.worker.event.connect(self._on_event)
        self.worker.finished.connect(self._finished)
        self.worker.cancelled.connect(self._cancelled)
        self.worker.failed.connect(self._failed)
        self.worker.start()
        self._update_buttons()

    def stop(self):
        if self.running():
            self.worker.request_stop()
            self.status.setText("stopping at the end of this batch...")

    def _on_event(self, event):
        if event.kind == "start":
            self.curves.clear()  # a round's run: its own curves
            self.status.setText(event.message)
        elif event.kind == "note":
            self.status.setText(event.message)
        elif event.kind == "mine":
            self.progress.setMaximum(event.batches)
            self.progress.setValue(event.batch)
            self.status.setText(event.message)
        elif event.kind == "batch":
            total = event.epochs * event.batches
            done = (event.epoch - 1) * event.batches + event.batch
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            eta = "" if event.eta_s is None else f", about {time.strftime('%H:%M:%S', time.gmtime(event.eta_s))} left"
            self.status.setText(f"epoch {event.epoch}/{event.epochs}, batch {event.batch}/{event.batches}{eta}")
            if event.losses:
                self.curves.add_batch(event.epoch, event.batch, event.batches, sum(event.losses.values()))
            self._show_drop(event.drop)
        elif event.kind == "epoch":
            if "mAP50" in event.metrics:
                self.curves.add_epoch(event.epoch, event.metrics["mAP50"])
            self.reload_runs()

    def _show_drop(self, drop: dict):
        parts = []
        if drop.get("obj_drop_fraction") is not None:
            parts.append(f"objectness {drop['obj_drop_fraction']:.1%} of {drop['negatives']} negatives")
        if drop.get("box_drop_fraction") is not None:
            parts.append(f"box {drop['box_drop_fraction']:.1%} of {drop['low_iou_positives']} low-IoU")
        self.drop.setText("measured drop: " + ", ".join(parts) if parts else "")

    def _finished(self, result):
        from bpr.selftrain import SelfTrainResult

        if not isinstance(result, SelfTrainResult):
            self.status.setText(f"Training of {result.name} finished")
        elif result.waiting_for_review is not None:
            found = result.mining[-1]
            self.status.setText(
                f"round {found.round}: {found.teacher} found {found.pseudo_boxes} pseudo-boxes "
                f"({found.new_pseudo_boxes} new) and {found.ignore_regions} ignore regions. Accept or reject "
                "them in the Review panel's finder (they are drawn dotted), then press Continue rounds.")
            self.continue_button.show()
        else:
            done = ", ".join(r.name for r in result.runs)
            self.status.setText(f"self-training finished: {done}"
                                + (f" ({result.stopped_early})" if result.stopped_early else ""))
            self._selftrain = None
        self._done()
        self.state.labelsChanged.emit()  # the pseudo-boxes to draw and list have changed

    def _cancelled(self, message):
        if self._selftrain is not None:
            self.status.setText(f"{message}: press Continue rounds to go on")
            self.continue_button.show()
        else:
            self.status.setText(f"{message}; select the run and press Resume to continue")
        self._done()

    def _failed(self, message, details):
        self.status.setText(f"failed: {message}")
        self._done()
        self.show_error("Training failed", message, details)

    def _done(self):
        self.progress.hide()
        self.reload_runs()
        self.state.reload()
        self._update_buttons()

    def reload_runs(self):
        current = self.runs.currentItem()
        keep = None if current is None else current.text(0)
        if self.state.project.folder != self._listed_folder:  # another project: nothing of the last one
            self._listed_folder, keep = self.state.project.folder, None
            if not self.running():
                self.curves.clear()
        self.runs.blockSignals(True)  # a reload keeps the picked run and leaves the curves as they are
        self.runs.clear()
        headers = [self.runs.headerItem().text(i) for i in range(2, self.runs.columnCount())]
        for r in self.state.project.runs():
            if not r.is_training:  # a record for detections with outside weights: nothing was trained
                cells = ["-"] * 4
            else:
                best = r.best_map50
                score = "-" if best is None else f"{best:.4f}" + (" (not learned)" if r.not_learned else "")
                cells = [score, f"{len(r.metrics)}/{r.config['epochs']}",
                         describe_method(r.config), trained_on(r.metrics) or "-"]
            item = QTreeWidgetItem([r.name, r.status, *cells])
            summary = f"{r.name}: {r.status}\n" + "\n".join(f"{h}: {c}" for h, c in zip(headers, cells))
            for column in range(self.runs.columnCount()):  # the dock is narrow: names and columns are cut
                item.setToolTip(column, summary)
            self.runs.addTopLevelItem(item)
        found = self.runs.findItems(keep, Qt.MatchFlag.MatchExactly, 0) if keep is not None else []
        if found:
            self.runs.setCurrentItem(found[0])
        _fit_columns(self.runs)
        self.runs.blockSignals(False)
        self._update_buttons()

    def _show_run_curves(self, item, _previous=None):
        """Draw a picked run's stored curves; the live curves of a training run are left alone."""
        if item is None or self.running():
            return
        self.curves.show_epochs(self.state.project.run(item.text(0)).metrics)

    def _update_buttons(self):
        running = self.running()
        item = self.runs.currentItem()
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running and item is not None
                                      and item.text(1) in ("cancelled", "failed"))


# ---------------------------------------------------------------------------------------------------
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
        self.not_learned = _wrapped("")  # a warning, shown for a run that has not learned
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
        form.addRow("Confidence", _beside(self.conf, self.conf_spin))
        layout.addLayout(form)

        self.frame_counts_label = QLabel("This frame")
        layout.addWidget(self.frame_counts_label)
        self.frame_counts = _tree(["Species", "Count"])
        self.frame_counts.setMaximumHeight(110)
        layout.addWidget(self.frame_counts)
        self.video_counts_label = _wrapped(VIDEO_COUNTS)
        layout.addWidget(self.video_counts_label)
        self.video_counts = _tree(["Species", "MaxN", "Frame", "Mean", "Frames present"])
        self.video_counts.itemDoubleClicked.connect(self._jump_maxn)
        layout.addWidget(self.video_counts)

        layout.addWidget(_wrapped("Missing-label finder: the pseudo-boxes of the next self-training round, "
                                  "and confident detections on partial frames that overlap no label. "
                                  "Confidence above sets the least score; A accepts, R rejects."))
        self.finder_species = QComboBox()
        self.finder_species.setToolTip("list the suggestions of one species only")
        self.finder_species.currentIndexChanged.connect(lambda _: self.refresh_all())
        finder_form = QFormLayout()
        finder_form.addRow("Species", self.finder_species)
        layout.addLayout(finder_form)
        self.missing = _tree(["Frame", "Score", "Species"])  # the species last: its text is the longest
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
            item.setIcon(0, species_icon(colors.get(row["species"])))
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
        _fit_columns(self.video_counts)
        self.frame_counts.setColumnWidth(0, self.video_counts.columnWidth(0))  # the same species; steady per frame
        _fit_columns(self.missing)
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