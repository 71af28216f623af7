"""The main window: video list, frame view with timeline and transport, Labels/Train/Review panels, menus."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QTabWidget,
    QTextEdit,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from app.frame_view import FrameView, confidence_text
from app.panels import LabelPanel, with_number_entry
from app.review_panel import ReviewPanel
from app.train_panel import TrainPanel
from app.state import ProjectState
from app.timeline import Timeline
from app.video_list import VideoList
from app.workers import Worker
from app.text import tip
from bpr.config import from_flat, options
from bpr.results.counts import timecode
from bpr.data.registry import FORMATS, exporters, import_options, importers
from bpr.data.store import Project

SPEEDS = ["0.25x", "0.5x", "1x", "2x", "4x"]
# The window fits half of a 1920-wide screen, and a 1024x640 laptop: the docks give way before the frame.
MIN_WINDOW = (900, 560)
MIN_LIST_WIDTH = 150
MIN_PANELS_WIDTH = 340
LIST_SHARE = 0.27  # the video list opens at most this share of the window wide: the frame is what is worked on
# The panels open this share of the window wide, at least MIN_PANELS_WIDTH: from about 1600 px the Review
# panel's counts show each species name whole beside its four numbers (narrower, the names are cut short).
PANELS_SHARE = 0.26
# Widgets that take plain keys for themselves: a window shortcut never fires inside them (an arrow key in a
# focused slider moves the slider, a letter in a text field is typed), as in DIVE.
TYPING_WIDGETS = (QLineEdit, QAbstractSpinBox, QAbstractSlider, QComboBox, QTextEdit, QPlainTextEdit)
EDITING_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End,
                Qt.Key.Key_PageUp, Qt.Key.Key_PageDown, Qt.Key.Key_Backspace, Qt.Key.Key_Delete}
# Every keyboard shortcut of the window, as Help ▸ Keyboard shortcuts lists them: (keys, what they do).
# The menus' own shortcuts (Ctrl+Z, PgUp, M, ...) are listed here too.
SHORTCUTS = [
    ("Right, F", "next frame (next image of an image folder)"),
    ("Left, D", "previous frame"),
    ("Shift+Right / Shift+Left", "10 frames on / back"),
    ("Home / End", "first / last frame"),
    ("PgDown / PgUp", "next / previous labeled frame"),
    ("Space", "play / pause"),
    ("B", "draw a box of the chosen species (ends after one box)"),
    ("Escape", "leave drawing, and clear the selection"),
    ("Delete, Backspace", "delete the selected box"),
    ("A / R", "accept / reject the finder's selected suggestion, and go to the next (Review panel)"),
    ("M", "jump to the MaxN frame of a species"),
    ("Ctrl+0", "fit the frame to the view"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"),
    ("Wheel, drag", "zoom, pan"),
]


def _import_job(format: str, folder: str, source: str, options, progress, stop):
    from bpr.data.registry import import_source

    return import_source(folder, format, source, options, progress)


def _export_job(format: str, folder: str, out: str, options, progress, stop) -> list[str]:
    from bpr.data.registry import export_to

    with Project.open(folder) as project:
        return export_to(project, format, out, options, progress, cancel=stop.is_set)


def _check_files_job(folder: str, progress, stop) -> dict[str, list[str]]:
    with Project.open(folder) as project:
        return project.check_files(cancel=stop.is_set)


class VerticalScrollArea(QScrollArea):
    """A panel that scrolls up and down only: its height no longer sets the window's least height, and
    it is never narrower than the panel beside a vertical scroll bar (at 960x600 the Review panel
    scrolled sideways for the bar's width, 3 px)."""

    def __init__(self, panel: QWidget):
        super().__init__()
        self.setWidget(panel)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        width = (self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                 + 2 * self.frameWidth())
        return QSize(max(hint.width(), width), hint.height())


class MainWindow(QMainWindow):
    def __init__(self, state: ProjectState | None = None):
        super().__init__()
        self.state = state or ProjectState(self)
        self.workers: list[Worker] = []
        self.keep_dock_widths = False  # True once a saved layout is restored: the user chose the widths
        self.setWindowTitle("bpr: partially labeled underwater video")
        self.resize(1500, 900)

        self.view = FrameView(self.state)
        self.timeline = Timeline(self.state)
        self.frame_label = QLabel("no project")
        # a long video id clips the label rather than widening the window
        self.frame_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._transport())
        layout.addWidget(self.view, 1)
        layout.addWidget(self.timeline)
        layout.addWidget(self.frame_label)
        self.setCentralWidget(central)

        self.videos = VideoList(self.state)
        dock = QDockWidget("Videos", self)
        dock.setWidget(self.videos)
        dock.setObjectName("videos")
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.videos_dock = dock
        self.labels = LabelPanel(self.state)
        self.train = TrainPanel(self.state, self.show_error)
        self.review = ReviewPanel(self.state, self.show_error)
        self.tabs = QTabWidget()
        for panel, title in ((self.labels, "Labels"), (self.train, "Train"), (self.review, "Review")):
            self.tabs.addTab(VerticalScrollArea(panel), title)
        dock = QDockWidget("Panels", self)
        dock.setWidget(self.tabs)
        dock.setObjectName("panels")
        self.panels_dock = dock
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.videos.setMinimumWidth(MIN_LIST_WIDTH)
        dock.setMinimumWidth(MIN_PANELS_WIDTH)
        self.setMinimumSize(*MIN_WINDOW)
        self.labels.drawToggled.connect(self.view.set_draw_species)
        self.labels.drawToggled.connect(self._show_mode)
        self.view.boxDrawn.connect(lambda: self.labels.draw.setChecked(False))  # one box, then back to editing
        self.view.boxSelected.connect(self.labels.set_selected)
        self.mode_label = QLabel()
        self.statusBar().addPermanentWidget(self.mode_label)
        self._show_mode(None)

        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._advance)
        self._menus()
        self._shortcuts()
        QApplication.instance().installEventFilter(self)  # keys typed into fields go to them (eventFilter)
        self.state.frameChanged.connect(self._update_frame_label)
        self.state.videoChanged.connect(self._update_frame_label)
        self.state.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.state.projectChanged.connect(self._project_opened)

    def _project_opened(self):
        self.setWindowTitle(f"bpr: {self.state.project.folder}")
        if self.keep_dock_widths:
            return
        # open the list wide enough for its columns (it has just reloaded), as far as the window allows
        frame = max(0, self.videos_dock.width() - self.videos.width())  # (none before the window is shown)
        width = min(self.videos.sizeHint().width(), max(MIN_LIST_WIDTH, int(LIST_SHARE * self.width())))
        panels = max(MIN_PANELS_WIDTH, int(PANELS_SHARE * self.width()))
        self.resizeDocks([self.videos_dock, self.panels_dock], [width + frame, panels], Qt.Orientation.Horizontal)

    # -- layout pieces ---------------------------------------------------------------------------
    def _transport(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip(tip("Play/pause (Space). Step: Left/Right or D/F, Shift+arrow 10 frames, "
                                    "Home/End, PgUp/PgDown labeled frames"))
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self.set_playing)
        self.speed = QComboBox()
        self.speed.addItems(SPEEDS)
        self.speed.setCurrentText("1x")
        self.speed.currentTextChanged.connect(lambda _: self.set_playing(self.play_timer.isActive()))
        fit = QPushButton("Fit")
        fit.clicked.connect(self.view.fit)
        self.text_toggle = QCheckBox("Names")
        self.text_toggle.setChecked(True)
        self.text_toggle.toggled.connect(self.view.set_show_text)
        for w in (self.play_button, QLabel("Speed"), self.speed, fit, self.text_toggle, self._image_button()):
            row.addWidget(w)
        row.addStretch(1)
        return row

    def _image_button(self) -> QToolButton:
        """Brightness and contrast in a drop-down, so the row above the frame stays narrow enough for
        a laptop screen."""
        self.brightness = QSlider(Qt.Orientation.Horizontal, minimum=-100, maximum=100, value=0)
        self.contrast = QSlider(Qt.Orientation.Horizontal, minimum=50, maximum=300, value=100)
        reset = QPushButton("Reset")
        reset.clicked.connect(lambda: (self.brightness.setValue(0), self.contrast.setValue(100)))
        box = QWidget()
        form = QFormLayout(box)
        form.addRow("Brightness", with_number_entry(self.brightness)[0])
        form.addRow("Contrast", with_number_entry(self.contrast, " %")[0])
        form.addRow(reset)
        for s in (self.brightness, self.contrast):
            s.setMinimumWidth(160)
            s.valueChanged.connect(self._enhance)
        menu = QMenu(self)
        action = QWidgetAction(menu)
        action.setDefaultWidget(box)
        menu.addAction(action)
        self.image_button = QToolButton(text="Image", toolTip="Brightness and contrast (view only)")
        self.image_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.image_button.setMenu(menu)
        return self.image_button

    def _enhance(self):
        self.view.set_enhancement(self.brightness.value(), self.contrast.value() / 100)
        adjusted = (self.brightness.value(), self.contrast.value()) != (0, 100)
        self.image_button.setText("Image (adjusted)" if adjusted else "Image")

    def _menus(self):
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&New project...", self.new_project, QKeySequence.StandardKey.New)
        self._action(file, "&Open project...", self.open_project_dialog, QKeySequence.StandardKey.Open)
        imports = file.addMenu("&Import")
        for f in importers():
            self._action(imports, f"{f.title}...", lambda checked=False, name=f.name: self.import_dialog(name))
        exports = file.addMenu("&Export")
        self._action(exports, "Counts CSV (per video)...", lambda: self.export_counts(per_frame=False))
        self._action(exports, "Counts CSV (per frame)...", lambda: self.export_counts(per_frame=True))
        for f in exporters():
            self._action(exports, f"{f.export_title}...", lambda checked=False, name=f.name: self.export_dialog(name))
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit = bar.addMenu("&Edit")
        undo = self.state.undo.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.state.undo.createRedoAction(self, "&Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        edit.addAction(undo)
        edit.addAction(redo)
        view = bar.addMenu("&View")
        self._action(view, "Fit frame", self.view.fit, "Ctrl+0")
        self._action(view, "Next labeled frame", lambda: self.jump_labeled(+1), "PgDown")
        self._action(view, "Previous labeled frame", lambda: self.jump_labeled(-1), "PgUp")
        self._action(view, "Jump to MaxN frame of a species...", self.jump_to_maxn, "M")
        view.addSeparator()
        view.addAction(self.videos_dock.toggleViewAction())  # a dock closed from its title bar comes back here
        view.addAction(self.panels_dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(shortcut)
        menu.addAction(action)
        return action

    def _shortcuts(self):
        """DIVE/CVAT-style stepping: Left/Right and D/F one frame, Shift 10, Space play, Home/End; B
        draws, Escape leaves drawing; A and R review the finder's suggestion."""
        keys = {"Right": 1, "F": 1, "Left": -1, "D": -1, "Shift+Right": 10, "Shift+Left": -10}
        for key, delta in keys.items():
            self._shortcut(key, lambda d=delta: self.step(d))
        self._shortcut("Space", lambda: self.play_button.toggle())
        self._shortcut("Home", lambda: self.step(-self._sequence_length()))
        self._shortcut("End", lambda: self.step(self._sequence_length()))
        self._shortcut("B", lambda: self.labels.draw.toggle())
        self._shortcut("Escape", self.leave_mode)
        self._shortcut("A", lambda: self.review.review_key(accept=True))
        self._shortcut("R", lambda: self.review.review_key(accept=False))

    def _shortcut(self, key: str, slot) -> QShortcut:
        return QShortcut(QKeySequence(key), self, activated=slot)

    def eventFilter(self, watched, event):
        """A plain key (no Ctrl or Alt) pressed in a focused text field, spin box, slider or drop-down
        goes to it, not to a window shortcut: accepting the shortcut override is how a widget claims a key."""
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(watched, TYPING_WIDGETS)
                and not event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
                and (event.key() < Qt.Key.Key_Escape or event.key() in EDITING_KEYS)):
            event.accept()
            return True
        return super().eventFilter(watched, event)

    def show_panel(self, panel: QWidget) -> None:
        """Bring a panel's tab to the front (each tab holds its panel in a scroll area)."""
        for i in range(self.tabs.count()):
            if self.tabs.widget(i).widget() is panel:
                self.tabs.setCurrentIndex(i)

    def leave_mode(self):
        """Escape: stop drawing, and clear the selection."""
        self.labels.draw.setChecked(False)
        self.view.scene().clearSelection()

    def _show_mode(self, species: str | None):
        self.mode_label.setText(f"Drawing a {species} box: drag on the frame (Esc leaves)" if species
                                else "Select and edit (B draws a box)")

    def show_shortcuts(self):
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(dialog)
        table = QTreeWidget()
        table.setHeaderLabels(["Keys", "What they do"])
        table.setRootIsDecorated(False)
        for keys, what in SHORTCUTS:
            table.addTopLevelItem(QTreeWidgetItem([keys, what]))
        table.resizeColumnToContents(0)
        layout.addWidget(table)
        layout.addWidget(QLabel("Frame keys act everywhere but in a text field, a number entry, a slider or a "
                                "drop-down, which take their keys themselves."))
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(dialog.reject)
        layout.addWidget(close)
        dialog.resize(620, 420)
        dialog.show()
        return dialog

    # -- stepping: frames of a video; in an image set, its images ----------------------------------
    def _on_image(self) -> bool:
        """Whether the current item is a still image. Each image is a row of the list under its folder,
        so stepping moves along the folder's rows, as DIVE steps through an image sequence."""
        return bool(self.state.video) and self.state.video["kind"] == "image"

    def _sequence_length(self) -> int:
        return self.videos.position()[1] if self._on_image() else self.state.frame_count

    def step(self, delta: int) -> bool:
        """``delta`` frames on, or ``delta`` images in an image set; False when already at the end."""
        if self._on_image():
            return self.videos.step(delta)
        before = self.state.frame
        self.state.step(delta)
        return self.state.frame != before

    def jump_labeled(self, direction: int) -> None:
        if self._on_image():
            self.videos.jump_labeled(direction)
        else:
            self.state.jump_labeled(direction)

    # -- playback --------------------------------------------------------------------------------
    def set_playing(self, on: bool):
        if on and self.state.video:
            fps = self.state.video["fps"] or 10.0
            speed = float(self.speed.currentText().rstrip("x"))
            self.play_timer.start(max(1, int(1000 / (fps * speed))))
        else:
            self.play_timer.stop()
        if self.play_button.isChecked() != self.play_timer.isActive():
            self.play_button.blockSignals(True)
            self.play_button.setChecked(self.play_timer.isActive())
            self.play_button.blockSignals(False)
        self.play_button.setText("Pause" if self.play_timer.isActive() else "Play")

    def _advance(self):
        if not self.step(1):
            self.set_playing(False)

    def _update_frame_label(self, *_):
        s = self.state
        if not s.video:
            self.frame_label.setText("no video")
            return
        # the id last: a long one is clipped, not the frame number
        sequence = s.image_sequence()
        if sequence:  # its place in its folder, as DIVE numbers an image sequence and the timeline shows it
            place = next(i for i, image in enumerate(sequence.images) if image["id"] == s.video["id"])
            self.frame_label.setText(f"image {place + 1} / {len(sequence.images)} of {sequence.name}  "
                                     f"[{s.frame_status()}]  {s.video['id']}")
            return
        fps = s.video["fps"]
        when = timecode(s.frame / fps) if fps else "-"
        self.frame_label.setText(f"frame {s.frame} / {s.frame_count - 1}  {when}  [{s.frame_status()}]  "
                                 f"{s.video['id']}")

    # -- projects --------------------------------------------------------------------------------
    def open_project(self, folder: str | Path) -> None:
        self.state.open(folder)
        from app.settings import remember_project

        remember_project(folder)
        # A file deleted or moved since would read "ok" until something tried it. Looked at off the GUI
        # thread: on a network share, thousands of images take seconds.
        opened = self.state.project.folder
        worker = Worker(_check_files_job, str(opened))
        worker.finished.connect(lambda files: self.state.files_checked(opened, files))
        worker.failed.connect(lambda message, details: self.statusBar().showMessage(
            f"Could not look at the project's files: {message}", 15000))
        self._start(worker)

    def open_project_dialog(self):
        folder = QFileDialog.getExistingDirectory(self, "Open project folder")
        if folder:
            try:
                self.open_project(folder)
            except Exception as e:
                self.show_error("Cannot open project", str(e))

    def new_project(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new project (empty)")
        if folder:
            Project.create(folder).close()
            self.open_project(folder)

    # -- long work -------------------------------------------------------------------------------
    def run_worker(self, title: str, worker: Worker, on_done) -> Worker:
        """Run a worker with a progress dialog that can cancel it."""
        dialog = QProgressDialog(title, "Cancel", 0, 0, self)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.canceled.connect(worker.request_stop)
        worker.progress.connect(lambda done, total, msg: (dialog.setMaximum(total), dialog.setValue(done),
                                                          dialog.setLabelText(f"{title}\n{msg}")))
        worker.finished.connect(lambda result: (dialog.reset(), on_done(result)))
        worker.failed.connect(lambda message, details: (dialog.reset(), self.show_error(title, message, details)))
        return self._start(worker)

    def _start(self, worker: Worker) -> Worker:
        """Start a worker the window holds, and waits for when it closes, until its outcome is handled.

        Let go of on its outcome, not on its thread's end: that comes on the worker's thread, maybe
        before the outcome reaches the GUI thread, and a worker nothing else holds would be gone by then.
        """
        def let_go(*_):
            worker.wait()  # its thread quits right after the outcome
            if worker in self.workers:
                self.workers.remove(worker)

        self.workers.append(worker)
        for outcome in (worker.finished, worker.failed, worker.cancelled):
            outcome.connect(let_go)
        worker.start()
        return worker

    def import_dialog(self, format: str) -> Worker | None:
        """Ask for what the format reads and for its questions (bpr.data.formats: Format.asks), then import."""
        fmt = FORMATS[format]
        if self.state.project is None:
            return None
        if fmt.source_is_folder:
            source = QFileDialog.getExistingDirectory(self, f"{fmt.title}: {fmt.source_help}")
        else:
            source, _ = QFileDialog.getOpenFileName(self, f"Import {fmt.title}", "", fmt.file_filter)
        if not source:
            return None
        values = {}
        for ask in fmt.asks:
            if ask.when is not None and not ask.when(Path(source)):
                continue
            if ask.kind == "folder":
                beside = (str(Path(source).parent),) if ask.start_beside_source else ()
                if folder := QFileDialog.getExistingDirectory(self, ask.prompt, *beside):
                    values[ask.option] = folder
                continue
            answer = self._ask(f"Import {fmt.title}", ask)
            if answer is None:
                return None
            values[ask.option] = answer[0]
        worker = Worker(_import_job, fmt.name, str(self.state.project.folder), source,
                        import_options(fmt, **values))

        def done(report):
            self.state.reload()
            QMessageBox.information(self, "Import finished", "\n".join(report.lines()))

        return self.run_worker(f"Importing {fmt.title}", worker, done)

    def _ask(self, title: str, ask) -> tuple | None:
        """The value of the choice clicked, as (value,), or None when the user cancels."""
        box = QMessageBox(QMessageBox.Icon.Question, title, ask.prompt, parent=self)
        box.setInformativeText(ask.detail)
        buttons = {}
        for i, (text, value) in enumerate(ask.choices):
            role = QMessageBox.ButtonRole.AcceptRole if i == 0 else QMessageBox.ButtonRole.DestructiveRole
            buttons[box.addButton(text, role)] = value
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(next(iter(buttons)))
        box.exec()
        clicked = box.clickedButton()
        return (buttons[clicked],) if clicked in buttons else None

    def show_error(self, title: str, message: str, details: str | None = None):
        """The one place errors reach the user."""
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, parent=self)
        if details:
            box.setDetailedText(details)
        box.open()
        self.statusBar().showMessage(f"{title}: {message}", 15000)

    # -- exports ---------------------------------------------------------------------------------
    def _save_path(self, title: str, default: str, filter_: str) -> str:
        exports = self.state.project.folder / "exports"  # where every export is offered first
        exports.mkdir(exist_ok=True)
        path, _ = QFileDialog.getSaveFileName(self, title, str(exports / default), filter_)
        return path

    def export_counts(self, per_frame: bool, path: str | None = None) -> str | None:
        from bpr.results.counts import CountSource, frame_counts, video_summary, write_frame_csv, write_summary_csv

        s = self.state
        path = path or self._save_path("Export counts", "counts-per-frame.csv" if per_frame else "counts.csv",
                                       "CSV (*.csv)")
        if not path:
            return None
        source = CountSource(run=s.run, conf=s.conf)
        if per_frame:
            table = frame_counts(s.project, source)
            write_frame_csv(table, path)
            what = f"{len(table['rows'])} frames x {len(table['species'])} species"
        else:
            rows = video_summary(s.project, source)
            write_summary_csv(rows, path)
            what = f"{len(rows)} rows (video x species: MaxN, mean count, frames present)"
        origin = f"detections of {s.run} at confidence {confidence_text(s.conf)}" if s.run else "the labels"
        self._confirm(f"Wrote {path}\n{what}\nfrom {origin}")
        return path

    def export_dialog(self, format: str) -> Worker | None:
        """Ask where to write, then export what the app shows: the labels, or the chosen run's detections
        at the confidence set, where the format holds detections."""
        fmt = FORMATS[format]
        if self.state.project is None:
            return None
        exports = self.state.project.folder / "exports"
        exports.mkdir(exist_ok=True)
        if fmt.export_to_folder:
            out = QFileDialog.getExistingDirectory(self, f"Folder for the {fmt.export_title}", str(exports))
        else:
            out, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.export_title}", str(exports / fmt.export_file),
                                                 fmt.export_filter)
        if not out:
            return None
        names = {o.name for o in options(fmt.export_options)
                 if fmt.export_option_names is None or o.name in fmt.export_option_names}
        values = {"run": self.state.run, "min_conf": self.state.conf} if "run" in names and self.state.run else {}
        worker = Worker(_export_job, fmt.name, str(self.state.project.folder), out,
                        from_flat(fmt.export_options, values))
        return self.run_worker(f"Exporting {fmt.export_title}", worker, lambda lines: self._confirm("\n".join(lines)))

    def _confirm(self, text: str):
        QMessageBox.information(self, "Export finished", text)
        self.statusBar().showMessage(text.splitlines()[0], 8000)

    def jump_to_maxn(self):
        names = [self.review.video_counts.topLevelItem(i).text(0)
                 for i in range(self.review.video_counts.topLevelItemCount())]
        if names:
            name, ok = QInputDialog.getItem(self, "Jump to MaxN", "Species", names, 0, False)
            if ok:
                self.review.jump_to_maxn(name)

    def closeEvent(self, event):
        if self.train.running():
            answer = QMessageBox.question(self, "Training is running",
                                          "Stop training (resumable) and quit?")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.train.worker.request_stop()
            self.train.worker.wait(60000)
        for worker in list(self.workers):
            worker.request_stop()
            worker.wait(10000)
        self.view.source.close()
        from app.settings import save_layout

        save_layout(self)
        super().closeEvent(event)
