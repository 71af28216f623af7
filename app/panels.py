"""What the side panels share (wrapped labels, lists, number entries beside sliders), and the Labels
panel: draw, edit, frame status, undo. The Train panel is app.train_panel, the Review panel
app.review_panel."""

from __future__ import annotations


from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.species import SpeciesDialog, ask_new_species, species_icon
from app.state import ProjectState

LIST_MIN_HEIGHT = 90  # a header and three rows


def wrapped_label(text: str) -> QLabel:
    """A label that wraps, and never asks for more width than the dock has."""
    label = QLabel(text)
    label.setWordWrap(True)
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)  # as tall as its lines at the width it gets: never drawn under a list
    label.setSizePolicy(policy)
    label.setMinimumWidth(0)
    return label


def list_tree(headers: list[str]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setMinimumHeight(LIST_MIN_HEIGHT)  # a short window scrolls the panel rather than squash a list
    tree.setHeaderLabels(headers)
    tree.setRootIsDecorated(False)
    tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    return tree


def fit_columns(tree: QTreeWidget, grow_only: bool = False) -> None:
    """Size each column but the last (which stretches) to what it holds: Qt's default widths cut
    species names short in the narrow dock, with room to spare in the number columns. A list
    refilled on every frame only widens, so that its columns stay put while a video plays."""
    for column in range(tree.columnCount() - 1):
        before = tree.columnWidth(column)
        tree.resizeColumnToContents(column)
        if grow_only and tree.columnWidth(column) < before:
            tree.setColumnWidth(column, before)


def names_give_way(tree: QTreeWidget) -> None:
    """The first column (a species) takes the width the number columns leave, and a name too long for
    it is cut short with "…" (its row's tooltip holds it whole): in a narrow dock the numbers stay in
    sight instead of scrolled off to the right. Qt keeps it so as the dock is resized."""
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, tree.columnCount()):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)


def with_number_entry(slider: QSlider, suffix: str = "") -> tuple[QWidget, QSpinBox]:
    """A slider with a number entry beside it, each following the other: a value can be typed, not only
    dragged to (it took seven drags to reach 75 % / 25 %)."""
    entry = QSpinBox(minimum=slider.minimum(), maximum=slider.maximum(), value=slider.value(), suffix=suffix)
    slider.valueChanged.connect(entry.setValue)
    entry.valueChanged.connect(slider.setValue)
    return beside(slider, entry), entry


def beside(main: QWidget, other: QWidget) -> QWidget:
    """One form row: ``main`` taking the width, ``other`` at its right."""
    row_widget = QWidget()
    row = QHBoxLayout(row_widget)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(main, 1)
    row.addWidget(other)
    return row_widget


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
        self.unused_hint = wrapped_label("These boxes are not used for training or evaluation until the frame "
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
        self.boxes = list_tree(["Species", "Source", "Size"])
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
        fit_columns(self.boxes, grow_only=self._boxes_fitted)
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
