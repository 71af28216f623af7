"""The Train panel: the training options, the rebalancing and pseudo-label settings, and live
progress (loss and val mAP50 charts); training runs in a child process."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.panels import beside, fit_columns, list_tree, with_number_entry, wrapped_label
from app.text import tip
from app.state import ProjectState
from app.workers import ChildCrashed, Worker, in_child_process
from bpr.config import Option, SelfTraining, TrainConfig, default, from_flat, options
from bpr.data.store import Project
from bpr.learn.training import describe_method, trained_on

MODELS = ["yolov5n.yaml", "yolov5s.yaml", "yolo11n.yaml", "yolo11s.yaml"]
# The training options the Train panel offers, in the order of their description (bpr.config); the
# command line has them all.
PANEL_OPTIONS = ("model", "epochs", "imgsz", "batch", "device", "workers", "p_obj", "p_box", "neg_iou",
                 "partial_only", "pseudo_precision", "pseudo_conf", "ignore_conf", "pseudo_boxes",
                 "ignore_band", "weight_by_score", "burn_in", "rounds", "tta")
# The Train panel's methods: how the unboxed animals of partial frames are treated.
METHODS = {"labels": "Labels only", "ema": "EMA teacher", "selftrain": "Self-training"}


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
        self.placeholder = wrapped_label(self.PLACEHOLDER)
        self.layout_.addWidget(self.placeholder)

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

    PLOTS_MIN_HEIGHT = 180

    def _redraw(self):
        empty = not self.loss[0] and not self.map50[0]
        self.placeholder.setVisible(empty)
        # empty, a line of text: the runs list below it stays in view at a laptop's height
        self.setMinimumHeight(0 if empty else self.PLOTS_MIN_HEIGHT)
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
                 selftrain: tuple[SelfTraining, bool] | None, device: str | None, send, stop):
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
                result = train(project, config, name=name, resume=resume, on_event=on_event, cancel=stop.is_set,
                               device=device)
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
              progress, stop, on_event, on_process=None, selftrain: tuple[SelfTraining, bool] | None = None,
              device: str | None = None):
    """Supervise training in a child process, so the GUI's event loop never waits on the training's GIL
    and a hard crash cannot take the app down. Stop is cooperative: the child stops at the end of its
    batch, resumable from last.pt. ``device`` replaces the config's (bpr.learn.training.train)."""
    from bpr.learn.training import TrainingCancelled

    run_name, cancelled = [resume], []

    def on_message(message):
        if message[0] == "event":
            run_name[0] = message[1].run
            on_event(message[1])
        elif message[0] == "cancelled":
            cancelled.append(message[1])

    try:
        run = in_child_process(_train_child, (folder, config, name, resume, selftrain, device), stop, on_message,
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
        self._rows = {}  # option name: what the form shows (a slider's row holds its number entry too)
        for o in self._options + self._selftrain_options:
            widget, shown = self._option_widget(o)
            setattr(self, o.name, widget)
            self._rows[o.name] = shown
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
        self.resume_button.setToolTip("go on with the picked run from its last epoch, with the settings it started "
                                      "with, on the device it trained on unless Device names another")
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
        self.drop = wrapped_label("")  # wraps: a long line would widen the dock and shrink the frame
        self.curves = Curves()
        for w in (self.progress, self.status, self.drop, self.curves):
            layout.addWidget(w)
        self.runs = list_tree(["Run", "Status", "Best val mAP50", "Epochs", "Method", "Trained on"])  # the score
        # first: the dock is narrow
        self.runs.itemSelectionChanged.connect(self._update_buttons)
        self.runs.currentItemChanged.connect(self._show_run_curves)
        layout.addWidget(self.runs, 1)
        state.projectChanged.connect(self.reload_runs)
        self.pseudo_boxes.toggled.connect(self._method_changed)
        self.ignore_band.toggled.connect(self._method_changed)
        self._method_changed()
        self._update_buttons()

    def _method_changed(self, *_):
        """Only the settings of the chosen method are enabled (the weighting only with pseudo-boxes, the
        ignore score only with the band); of pseudo-boxes and the band, the last one on cannot be turned off."""
        method = self.method.currentData()
        teacher = method != "labels"
        band, boxes = self.ignore_band.isChecked(), self.pseudo_boxes.isChecked()
        enabled = {"pseudo_precision": teacher, "pseudo_conf": teacher, "ignore_conf": teacher and band,
                   "pseudo_boxes": teacher and band, "ignore_band": teacher and boxes,
                   "weight_by_score": teacher and boxes, "burn_in": method == "ema",
                   "rounds": method == "selftrain", "tta": method == "selftrain"}
        for name, on in enabled.items():
            self._rows[name].setEnabled(on)
        self.pause_for_review.setEnabled(method == "selftrain")

    def _option_widget(self, o: Option) -> tuple[QWidget, QWidget]:
        """(the widget holding the option's value, what the form shows: the widget, or a row with it)."""
        if o.name == "model":
            widget = QComboBox()
            widget.setEditable(True)
            widget.addItems(MODELS)
            widget.setCurrentText(o.default)
            browse = QPushButton("Local .pt...")
            browse.clicked.connect(self._browse)
            shown = beside(widget, browse)
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
        elif o.kind == float | None:  # None shows as a word at the bottom of the range, Qt's idiom
            widget = shown = QDoubleSpinBox(minimum=o.low - o.step, maximum=o.high, singleStep=o.step)
            widget.setSpecialValueText(o.unset)
            widget.setValue(widget.minimum() if o.default is None else o.default)
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
        if isinstance(widget, QDoubleSpinBox) and widget.specialValueText() and widget.value() == widget.minimum():
            return None
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
        """The picked run, on the device it trained on unless Device names another (a run carried from
        a GPU machine goes on here on the CPU, say)."""
        item = self.runs.currentItem()
        if item is not None:
            device = self.config().device
            self._launch(None, item.text(0), device=None if device == default(TrainConfig, "device") else device)

    def _launch(self, config: TrainConfig | None, resume: str | None, selftrain: tuple | None = None,
                device: str | None = None):
        """Train, resume (on ``device``, where given), or (``selftrain``: name, settings, pause for review)
        run self-training rounds."""
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
        self.worker.kwargs["device"] = device
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
                f"{found}. Accept or reject them in the Review panel's finder (they are drawn dotted), then "
                "press Continue rounds.")
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
                note = f" ({r.not_learned_note})" if r.not_learned_note else ""
                score = "-" if best is None else f"{best:.4f}{note}"
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
        fit_columns(self.runs)
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
