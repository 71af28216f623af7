"""The project's species: a colour swatch for each (the legend of the boxes drawn), adding one only when
the user confirms it, and the species manager (rename, merge, delete, each showing what it touches and
each undoable)."""

from __future__ import annotations

import difflib

from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.state import ProjectState

SWATCH_PX = 12


def species_icon(color: str | None) -> QIcon:
    """A filled square in the species' colour: the colour its boxes are drawn in."""
    pixmap = QPixmap(SWATCH_PX, SWATCH_PX)
    pixmap.fill(QColor(color or "#ffffff"))
    return QIcon(pixmap)


def _touches(usage: dict[str, int]) -> str:
    parts = [f"{usage['boxes']} label(s)", f"{usage['detections']} detection(s)"]
    if usage["pseudo_boxes"]:
        parts.append(f"{usage['pseudo_boxes']} pseudo-box(es)")
    return ", ".join(parts)


def ask_new_species(parent: QWidget, state: ProjectState) -> str | None:
    """Ask for a new species' name and confirm it; adds it (undoably) and returns its name, or None.

    A species is never made by typing into the picker: a stray key there once made "squat lobsterb",
    which then became a class of its own in training."""
    name, ok = QInputDialog.getText(parent, "Add species", "Name of the new species:")
    name = " ".join(name.split())
    if not ok or not name:
        return None
    names = [s["name"] for s in state.project.species()]
    same = next((n for n in names if n.lower() == name.lower()), None)
    if same is not None:
        QMessageBox.information(parent, "Add species", f"The project already has the species “{same}”.")
        return same
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=1, cutoff=0.8)
    text = f"Add the species “{name}” to the project?"
    if close:
        similar = next(n for n in names if n.lower() == close[0])
        text += (f"\n\nIt is close to “{similar}”, which the project has already. Add it only if it is another "
                 "species: a species is a class of its own when a model trains.")
    answer = QMessageBox.question(parent, "Add species", text)
    if answer != QMessageBox.StandardButton.Yes:
        return None
    state.add_species(name)
    return name


class SpeciesDialog(QDialog):
    """The species manager: each species with its colour and what it has; rename, merge, delete."""

    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("Species")
        layout = QVBoxLayout(self)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Species", "Labels", "Detections", "Pseudo-boxes"])
        self.tree.setRootIsDecorated(False)
        layout.addWidget(self.tree)
        layout.addWidget(QLabel("Each change can be undone (Edit ▸ Undo)."))
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add...")
        self.rename_button = QPushButton("Rename...")
        self.merge_button = QPushButton("Merge into...")
        self.delete_button = QPushButton("Delete...")
        for button, slot in ((self.add_button, self._add), (self.rename_button, self._rename),
                             (self.merge_button, self._merge), (self.delete_button, self._delete)):
            button.clicked.connect(slot)
            buttons.addWidget(button)
        layout.addLayout(buttons)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.tree.currentItemChanged.connect(self._enable)
        state.speciesChanged.connect(self.reload)
        self.reload()
        self.resize(520, 360)

    def reload(self):
        current = self.selected()
        self.tree.clear()
        for species in self.state.project.species():
            usage = self.state.project.species_usage(species["name"])
            item = QTreeWidgetItem([species["name"], str(usage["boxes"]), str(usage["detections"]),
                                    str(usage["pseudo_boxes"])])
            item.setIcon(0, species_icon(species["color"]))
            self.tree.addTopLevelItem(item)
            if species["name"] == current:
                self.tree.setCurrentItem(item)
        for column in range(self.tree.columnCount()):
            self.tree.resizeColumnToContents(column)
        self._enable()

    def selected(self) -> str | None:
        item = self.tree.currentItem()
        return item.text(0) if item else None

    def _enable(self, *_):
        chosen = self.selected() is not None
        for button in (self.rename_button, self.merge_button, self.delete_button):
            button.setEnabled(chosen)
        self.merge_button.setEnabled(chosen and self.tree.topLevelItemCount() > 1)

    def _add(self):
        ask_new_species(self, self.state)

    def _rename(self):
        name = self.selected()
        new_name, ok = QInputDialog.getText(self, "Rename species", f"New name for “{name}”:", text=name)
        new_name = " ".join(new_name.split())
        if not ok or not new_name or new_name == name:
            return
        others = {s["name"].lower(): s["name"] for s in self.state.project.species() if s["name"] != name}
        if new_name.lower() in others:
            self._merge(into=others[new_name.lower()])
            return
        self.state.rename_species(name, new_name)

    def _merge(self, *_, into: str | None = None):
        name = self.selected()
        if into is None:
            others = [s["name"] for s in self.state.project.species() if s["name"] != name]
            into, ok = QInputDialog.getItem(self, "Merge species", f"Merge “{name}” into:", others, 0, False)
            if not ok:
                return
        usage = self.state.project.species_usage(name)
        answer = QMessageBox.question(
            self, "Merge species", f"Merge “{name}” into “{into}”?\n\n{_touches(usage)} become “{into}”, and "
            f"“{name}” is removed.")
        if answer == QMessageBox.StandardButton.Yes:
            self.state.merge_species(name, into)

    def _delete(self):
        name = self.selected()
        usage = self.state.project.species_usage(name)
        answer = QMessageBox.warning(
            self, "Delete species", f"Delete “{name}”, with its {_touches(usage)}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            self.state.delete_species(name)
