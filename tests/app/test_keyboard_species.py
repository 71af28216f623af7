"""The keyboard model (keys go to a focused text field, spin box or slider; Escape leaves drawing; a drawn
box ends drawing; a list of shortcuts) and the species manager (no species made by a stray key; add,
rename, merge and delete confirmed, counted and undoable)."""

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

from tests.app.test_labels import drag


def species_names(window):
    return [s["name"] for s in window.state.project.species()]


def test_b_typed_into_the_focused_species_picker_never_makes_a_species(window, qtbot):
    """It once typed "b" into the editable picker, and drawing then made the species "squat lobsterb"."""
    s, panel = window.state, window.labels
    before = species_names(window)
    s.set_frame(3)
    panel.species.setCurrentText("squat lobster")
    panel.species.setFocus()
    qtbot.waitUntil(panel.species.hasFocus)
    QTest.keyClick(panel.species, Qt.Key.Key_B)
    assert not panel.species.isEditable() and not panel.draw.isChecked()  # the key went to the picker
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_B)
    assert panel.draw.isChecked()
    drag(window.view, (100, 100), (160, 150))
    assert species_names(window) == before
    assert {b["species"] for b in s.labels() if b["source"] == "drawn"} <= set(before)


def test_an_arrow_key_in_a_focused_slider_moves_the_slider_not_the_frame(window, qtbot):
    s = window.state
    s.set_frame(5)
    slider = window.review.conf
    window.show_panel(window.review)
    slider.setFocus()
    qtbot.waitUntil(slider.hasFocus)
    value = slider.value()
    QTest.keyClick(slider, Qt.Key.Key_Right)
    assert slider.value() == value + 1 and s.frame == 5
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Right)
    assert s.frame == 6
    spin = window.review.keep
    spin.setFocus()
    QTest.keyClick(spin, Qt.Key.Key_F)  # typed (and refused by the number entry), not a step
    assert s.frame == 6


def test_one_box_ends_drawing_and_escape_leaves_it(window, qtbot):
    panel, s = window.labels, window.state
    s.set_frame(3)
    panel.species.setCurrentText("squat lobster")
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_B)
    assert panel.draw.isChecked() and "Drawing a squat lobster box" in window.mode_label.text()
    drag(window.view, (100, 100), (160, 150))
    assert not panel.draw.isChecked() and window.view.draw_species is None
    assert window.mode_label.text().startswith("Select and edit")
    QTest.keyClick(window.view, Qt.Key.Key_B)
    assert panel.draw.isChecked()
    QTest.keyClick(window.view, Qt.Key.Key_Escape)
    assert not panel.draw.isChecked() and window.view.draw_species is None


def test_help_lists_the_keyboard_shortcuts(window):
    dialog = window.show_shortcuts()
    table = dialog.findChild(type(window.review.missing))
    rows = {table.topLevelItem(i).text(0) for i in range(table.topLevelItemCount())}
    assert {"Right, F", "Escape", "A / R", "B"} <= rows
    dialog.close()


def test_a_new_species_is_confirmed_and_warned_when_close_to_another(window, monkeypatch):
    """Add species... asks for the name and confirms it, naming the close species it may be a typo of;
    the picker chooses it; undo takes it away."""
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("squat lobsterb", True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    window.labels._add_species()
    assert "squat lobsterb" not in species_names(window)
    assert "It is close to “squat lobster”" in asked[0]
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("sea pig", True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.labels._add_species()
    assert "sea pig" in species_names(window) and window.labels.current_species() == "sea pig"
    window.state.undo.undo()
    assert "sea pig" not in species_names(window)
    assert window.labels.species.findText("sea pig") == -1


def test_the_species_manager_renames_merges_and_deletes_undoably(window, monkeypatch):
    from app.species import SpeciesDialog

    s = window.state
    dialog = SpeciesDialog(s, window)
    names = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
    assert names == species_names(window)

    def choose(name):
        item = next(dialog.tree.topLevelItem(i) for i in range(dialog.tree.topLevelItemCount())
                    if dialog.tree.topLevelItem(i).text(0) == name)
        dialog.tree.setCurrentItem(item)
        return int(item.text(1))

    lobsters = choose("squat lobster")
    assert lobsters > 0
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Munidopsis", True))
    dialog._rename()
    assert "Munidopsis" in species_names(window) and "squat lobster" not in species_names(window)
    s.undo.undo()
    assert "squat lobster" in species_names(window)

    other = next(n for n in species_names(window) if n != "squat lobster")
    others = choose(other)
    choose("squat lobster")
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (other, True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    dialog._merge()
    assert f"{lobsters} label(s)" in asked[0]
    assert "squat lobster" not in species_names(window) and choose(other) == lobsters + others
    s.undo.undo()
    assert choose("squat lobster") == lobsters and choose(other) == others

    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]) or QMessageBox.StandardButton.Yes)
    choose("squat lobster")
    dialog._delete()
    assert f"its {lobsters} label(s)" in warned[0] and "squat lobster" not in species_names(window)
    s.undo.undo()
    assert choose("squat lobster") == lobsters
    dialog.close()


def test_the_window_fits_960_by_600_and_the_frame_has_most_of_it(window, qtbot):
    """It could not be smaller than 1148x696, so it could not take half of a 1920-wide screen; the
    panels scroll instead of setting its height, and the video list opens narrow."""
    assert window.minimumSizeHint().width() <= 960 and window.minimumSizeHint().height() <= 600
    window.resize(960, 600)
    qtbot.waitUntil(lambda: window.size().toTuple() == (960, 600))
    assert window.view.width() >= window.videos_dock.width() and window.view.width() >= 0.3 * 960
    for panel in (window.labels, window.train, window.review):  # scrolled up and down, never sideways
        window.show_panel(panel)
        QApplication.processEvents()
        area = panel.parentWidget().parentWidget()
        assert area.viewport().width() >= panel.minimumSizeHint().width()
        assert not area.horizontalScrollBar().isVisible()
    window.resize(1500, 900)
    qtbot.waitUntil(lambda: window.width() == 1500)
    window.state.reload()  # the list opens at its width again, as on opening
    window._project_opened()
    QApplication.processEvents()
    assert window.videos_dock.width() <= 0.3 * 1500 and window.view.width() >= 0.4 * 1500


def test_the_panels_dock_keeps_its_width_when_the_drop_line_appears(window, qtbot):
    window.show_panel(window.train)
    QApplication.processEvents()
    before = window.panels_dock.width()
    window.train.drop.setText("measured drop: " + ", ".join(f"species {i}: {i}% of negatives" for i in range(20)))
    QApplication.processEvents()
    assert window.panels_dock.width() == before


def test_every_slider_has_a_number_entry_and_play_turns_into_pause(window):
    train = window.train
    train.p_obj_entry.setValue(75)
    assert train.p_obj.value() == 75 and train.config().rebalancing.p_obj == 0.75
    train.p_obj.setValue(25)
    assert train.p_obj_entry.value() == 25
    window.play_button.setChecked(True)
    assert window.play_button.text() == "Pause"
    window.play_button.setChecked(False)
    assert window.play_button.text() == "Play"
    assert window.train.method.toolTip().startswith("<p>")  # rich text: Qt wraps it


def test_save_dialogs_open_in_the_exports_folder(window, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    offered = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: offered.append(a[2]) or ("", ""))
    window.export_counts(per_frame=False)
    assert offered == [str(window.state.project.folder / "exports" / "counts.csv")]


def test_the_finder_filters_by_species_and_a_and_r_review_from_the_keyboard(window, qtbot):
    """The finder as a review queue: a species filter, and the A and R keys, which accept or reject the
    chosen suggestion and go on to the next."""
    from tests.app.test_review_train import add_known_detections, settle

    s, review = window.state, window.review
    add_known_detections(window)
    settle(window, qtbot, lambda: review.conf.setValue(20))
    assert len(review.suggestions) == 4
    urchin = review.finder_species.findData("fragile pink urchin")
    review.finder_species.setCurrentIndex(urchin)
    assert len(review.suggestions) == 4 and {x.species for x in review.suggestions} == {"fragile pink urchin"}
    other = next(i for i in range(1, review.finder_species.count()) if i != urchin)
    review.finder_species.setCurrentIndex(other)
    assert review.suggestions == []
    review.finder_species.setCurrentIndex(0)  # all species
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_A)  # nothing chosen: A chooses the first
    assert review._current_suggestion() is review.suggestions[0]
    first = review.suggestions[0]
    QTest.keyClick(window.view, Qt.Key.Key_R)
    assert first not in review.suggestions and len(review.suggestions) == 3
    assert review._current_suggestion() is review.suggestions[0]  # the queue went on
    QTest.keyClick(window.view, Qt.Key.Key_A)
    assert len(review.suggestions) == 2
    accepted = s.project.conn.execute("SELECT count(*) FROM boxes WHERE source = 'accepted'").fetchone()[0]
    assert accepted == 1
