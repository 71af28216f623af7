"""Labeling: draw, move, relabel, delete boxes, mark the frame; undo/redo; saved at once."""

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from bpr.data.store import Project


def drag(view, start, end):
    a, b = view.mapFromScene(*start), view.mapFromScene(*end)
    QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    QTest.mouseMove(view.viewport(), QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    QTest.mouseMove(view.viewport(), b)
    QTest.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def test_draw_undo_redo_relabel_delete_and_status(window):
    s, panel = window.state, window.labels
    vid = s.video["id"]
    s.set_frame(3)  # not a labeled frame in the demo
    before = len(s.labels())
    panel.species.setCurrentText("squat lobster")
    panel.draw.setChecked(True)
    drag(window.view, (100, 100), (160, 150))
    boxes = s.labels()
    assert len(boxes) == before + 1
    new = [b for b in boxes if b["source"] == "drawn"][0]
    assert new["species"] == "squat lobster"
    assert abs(new["x1"] - 100) < 3 and abs(new["y2"] - 150) < 3
    panel.draw.setChecked(False)

    s.undo.undo()
    assert len(s.labels()) == before
    s.undo.redo()
    new = [b for b in s.labels() if b["source"] == "drawn"][0]

    s.move_box(new["id"], (110, 110, 170, 160))
    s.relabel_box(new["id"], "Basket star")
    edited = [b for b in s.labels() if b["id"] == new["id"]][0]
    assert (edited["x1"], edited["species"]) == (110, "Basket star")
    s.undo.undo()
    s.undo.undo()
    edited = [b for b in s.labels() if b["id"] == new["id"]][0]
    assert (edited["x1"], edited["species"]) == (new["x1"], "squat lobster")

    panel.status_buttons["full"].click()
    assert s.frame_status() == "full"
    s.delete_box(new["id"])
    assert len(s.labels()) == before

    # Every edit was committed as it happened: another connection sees it now.
    with Project.open(s.project.folder) as other:
        assert other.frame_status(vid, 3) == "full"
        assert len(other.boxes(vid, 3)) == before
    s.undo.undo()  # the delete
    with Project.open(s.project.folder) as other:
        assert len(other.boxes(vid, 3)) == before + 1


def test_moving_a_box_with_the_mouse_and_deleting_with_the_key(window):
    s = window.state
    s.set_frame(3)
    box_id = s.project.add_box(s.video["id"], 3, "urchin", (200, 100, 260, 160))
    s.labelsChanged.emit()
    drag(window.view, (230, 130), (250, 140))  # grab the middle: moves the whole box
    moved = [b for b in s.labels() if b["id"] == box_id][0]
    assert abs(moved["x1"] - 220) < 3 and abs(moved["y1"] - 110) < 3 and abs(moved["x2"] - 280) < 3
    drag(window.view, (279, 169), (300, 190))  # the bottom-right corner resizes
    resized = [b for b in s.labels() if b["id"] == box_id][0]
    assert abs(resized["x1"] - 220) < 3 and abs(resized["x2"] - 300) < 4 and abs(resized["y2"] - 190) < 4
    window.view.setFocus()
    QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     window.view.mapFromScene(240, 140))
    assert window.labels.selected and window.labels.selected["id"] == box_id
    QTest.keyClick(window.view, Qt.Key.Key_Delete)
    assert box_id not in [b["id"] for b in s.labels()]


def test_boxes_on_an_unmarked_frame_say_they_are_not_used(window):
    """CVAT tracks leave boxes on frames between keyframes; the panel says these reach no dataset."""
    s, panel = window.state, window.labels
    s.set_frame(3)  # not a labeled frame in the demo
    if not s.labels():
        s.add_box("squat lobster", (100, 100, 160, 150))
    assert s.frame_status() == "none" and not panel.unused_hint.isHidden()
    panel.status_buttons["partial"].click()
    assert panel.unused_hint.isHidden()
    panel.status_buttons["none"].click()
    for box in s.labels():
        s.delete_box(box["id"])
    assert panel.unused_hint.isHidden()  # nothing to warn about


def test_the_box_list_fits_its_columns_and_holds_still_from_frame_to_frame(window, qtbot):
    """Fitted to the names, the species, where each box came from and its size show whole in the dock
    at its opening width (four corner columns were cut off); neither a frame with no boxes nor a new
    species narrows a column."""
    s, boxes = window.state, window.labels.boxes
    qtbot.waitExposed(window)
    labeled = [f["frame_index"] for f in s.project.labeled_frames(s.video["id"])]
    s.set_frame(labeled[0])
    header, metrics = boxes.header(), boxes.fontMetrics()
    for column in (0, 1, 2):  # Species, Source, Size
        texts = [boxes.topLevelItem(i).text(column) for i in range(boxes.topLevelItemCount())]
        widest = max(metrics.horizontalAdvance(t) for t in texts)
        assert boxes.columnWidth(column) >= widest
        assert header.sectionViewportPosition(column) + widest <= boxes.viewport().width()
    widths = [boxes.columnWidth(c) for c in range(boxes.columnCount() - 1)]
    other = labeled[1]
    for box in s.project.boxes(s.video["id"], other):  # every frame of the demo has boxes: empty one
        s.project.delete_box(box["id"])
    s.set_frame(other)
    assert boxes.topLevelItemCount() == 0
    assert [boxes.columnWidth(c) for c in range(boxes.columnCount() - 1)] == widths
    s.add_box("eel", (1, 1, 9, 9))  # a new species, shorter than every name and number before it
    assert boxes.topLevelItemCount() == 1
    s.undo.undo()
    assert boxes.topLevelItemCount() == 0
    assert [boxes.columnWidth(c) for c in range(boxes.columnCount() - 1)] == widths
