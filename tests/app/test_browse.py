"""Browsing: the video list, the frame view's labels, keyboard stepping, playback, missing videos."""

import shutil

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QStyleOptionViewItem

from app.frame_view import BoxItem


def label_items(window):
    return [i for i in window.view.scene().items() if isinstance(i, BoxItem)]


def test_video_list_and_frame_view(window):
    assert window.videos.topLevelItemCount() == 4
    videos = window.videos
    QApplication.processEvents()  # lay out the docks
    columns = sum(videos.columnWidth(c) for c in range(videos.columnCount()))
    assert columns <= videos.viewport().width()  # the labeled counts are not cut off
    last = videos.columnCount() - 1  # ... nor pushed out by a gap where the hidden status column was
    heading = videos.headerItem()  # what the numbers are: "Labeled 29 / 0" said too little
    assert heading.text(4) == "Partial/full" and "partial (some animals unboxed" in heading.toolTip(4)
    assert videos.isColumnHidden(2) and videos.header().sectionPosition(last) + videos.columnWidth(last) == columns
    train = [v["id"] for v in window.state.project.videos("train")]
    item = window.videos.findItems(train[1], Qt.MatchFlag.MatchExactly, 0)[0]
    window.videos.setCurrentItem(item)
    assert window.state.video["id"] == train[1]
    window.state.set_frame(10)
    labels = window.state.project.boxes(train[1], 10)
    assert len(labels) > 0 and len(label_items(window)) == len(labels)
    assert window.view.pixmap_item.pixmap().width() == 640
    assert all(len(i.childItems()) == 1 for i in label_items(window))  # the caption
    window.text_toggle.setChecked(False)
    assert all(not i.childItems() for i in label_items(window))


def test_the_shown_video_is_the_current_row_on_opening_and_after_a_reload(window):
    videos, s = window.videos, window.state
    assert videos.currentItem() is videos.item(s.video["id"])
    other = s.project.videos("test")[0]["id"]
    s.set_video(other)  # from elsewhere: the review's MaxN table, a jump to a detection
    assert videos.currentItem() is videos.item(other)
    s.reload()  # the list is rebuilt (an import, a finished run)
    assert videos.currentItem() is videos.item(other)


def test_long_ids_are_elided_and_do_not_widen_the_window(window):
    """Image datasets have long ids (a roboflow path is over 80 characters): the list elides them, the
    full id in the tooltip, and the window keeps its size on a 1366-pixel laptop screen."""
    long_id = "test/images/" + "00_00_38_23_png.rf." + "bdd2ea2f19ad32ab670ef1c010757856" * 3
    window.state.project.conn.execute("INSERT INTO videos (id, kind, split) VALUES (?, 'image', 'test')",
                                      (long_id,))
    window.resize(1366, 768)
    window.state.reload()  # as after an import: the list reloads
    QApplication.processEvents()
    videos = window.videos
    assert window.width() == 1366
    item = videos.item(long_id)
    assert item.parent().text(0) == "test/images" and item.text(0) == long_id.removeprefix("test/images/")
    assert item.toolTip(0).splitlines()[0] == long_id  # (then why it has no file)
    assert videos.columnWidth(0) < videos.fontMetrics().horizontalAdvance(long_id)
    assert sum(videos.columnWidth(c) for c in range(videos.columnCount())) <= videos.viewport().width()


def test_a_narrow_list_hides_frames_then_split_before_the_image_names(tmp_path, make_window):
    """At 960x600 the list is about 190 px wide: an image's name under its folder keeps MIN_ID_CHARS in
    view past the indentation (the counts scroll), the frame count (1 for an image) and then the split
    hidden to make room; widened again, they come back. The tooltip says what they said."""
    from app.video_list import MIN_ID_CHARS

    names = [f"00_{i:02d}_38_23_png.rf.bdd2ea2f19ad32ab670ef1c0" for i in range(3)]
    make_image_set(tmp_path, {names[0]: 1}, names=names, folders=("set",))
    window = make_window(tmp_path / "images")
    videos = window.videos
    window.resize(960, 600)
    QApplication.processEvents()
    videos.resize(190, 400)  # the dock's width at 960x600
    QApplication.processEvents()
    header = [videos.headerItem().text(c) for c in range(videos.columnCount()) if not videos.isColumnHidden(c)]
    assert header == ["Video", "Partial/full"]
    image_id = "set/00_00_38_23_png.rf.bdd2ea2f19ad32ab670ef1c0"
    image = videos.item(image_id)
    shown = videos.columnWidth(0) - videos.id_indent
    assert shown >= videos.fontMetrics().horizontalAdvance("0" * MIN_ID_CHARS + "…")
    assert image.toolTip(0).splitlines()[1] == f"split: {window.state.project.video(image_id)['split'] or 'none'}"
    videos.resize(700, 400)
    QApplication.processEvents()
    assert not videos.isColumnHidden(1) and not videos.isColumnHidden(3)


def test_a_narrow_list_of_videos_keeps_their_split(window):
    """A video's id does not say its split (DUSIA's are timestamps): only the frame count goes."""
    videos = window.videos
    videos.resize(190, 400)
    QApplication.processEvents()
    assert videos.isColumnHidden(3) and not videos.isColumnHidden(1)


def shown_id(videos, item) -> str:
    """The text the list draws for a row's id, as its delegate lays it out."""
    option = QStyleOptionViewItem()
    videos.initViewItemOption(option)
    index = videos.indexFromItem(item, 0)
    option.rect = videos.visualRect(index)
    videos.itemDelegateForColumn(0).initStyleOption(option, index)
    return option.text


def test_a_narrow_list_shows_the_part_of_the_ids_that_tells_them_apart(window):
    """The demo's DUSIA ids share their first 12 digits (the day): cut at the end, every one read
    "00002026…". Too narrow for them, the list leaves out what they share; wide enough, it shows them whole."""
    videos = window.videos
    ids = sorted(v["id"] for v in window.state.project.videos())
    videos.resize(190, 400)
    QApplication.processEvents()
    assert [shown_id(videos, videos.item(i)) for i in ids] == ["…" + i[12:] for i in ids]
    assert len({shown_id(videos, videos.item(i)) for i in ids}) == len(ids)
    videos.resize(700, 400)
    QApplication.processEvents()
    assert [shown_id(videos, videos.item(i)) for i in ids] == ids


def test_keyboard_stepping_like_dive(window, qtbot):
    s = window.state
    s.set_frame(20)
    for key, modifier, expected in ((Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, 21),
                                    (Qt.Key.Key_F, Qt.KeyboardModifier.NoModifier, 22),
                                    (Qt.Key.Key_D, Qt.KeyboardModifier.NoModifier, 21),
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier, 20),
                                    (Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier, 30),
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier, 20),
                                    (Qt.Key.Key_End, Qt.KeyboardModifier.NoModifier, s.frame_count - 1),
                                    (Qt.Key.Key_Home, Qt.KeyboardModifier.NoModifier, 0)):
        QTest.keyClick(window, key, modifier)
        assert s.frame == expected, key
    QTest.keyClick(window, Qt.Key.Key_PageDown)
    labeled = [f["frame_index"] for f in s.labeled_frames()]
    assert s.frame == labeled[0]
    QTest.keyClick(window, Qt.Key.Key_PageDown)
    assert s.frame == labeled[1]
    QTest.keyClick(window, Qt.Key.Key_PageUp)
    assert s.frame == labeled[0]


def make_image_set(tmp_path, boxes: dict[str, int], names=tuple(f"img{i:02d}" for i in range(12)),
                   folders=("set",)):
    """A project of images (by default 12, set/img00..img11, in one folder; the same names in each of
    ``folders``); ``boxes``: image name -> urchins boxed, on a fully labeled frame, in every folder."""
    from PIL import Image

    from bpr.data.formats import write_batch
    from bpr.data.formats.common import BoxRecord, ImportBatch, VideoRecord
    from bpr.data.store import Project

    batch = ImportBatch(species={"urchin": None})
    for folder in folders:
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (64, 48)).save(tmp_path / folder / f"{name}.png")
            batch.videos.append(VideoRecord(f"{folder}/{name}", kind="image", path=tmp_path / folder / f"{name}.png",
                                            frame_count=1, width=64, height=48))
        batch.frames += [(f"{folder}/{n}", 0, "full") for n in sorted(boxes)]
        batch.boxes += [BoxRecord(f"{folder}/{n}", 0, "urchin", 2 + i, 2, 20 + i, 20, origin_key=f"{folder}/{n}-{i}")
                        for n, count in sorted(boxes.items()) for i in range(count)]
    with Project.create(tmp_path / "images") as project:
        write_batch(project, batch)
    return tmp_path / "images"


def test_an_image_set_steps_from_image_to_image(make_window, tmp_path, qtbot):
    """Each image is one item of the list; Left/Right, Shift, Home/End, PgUp/PgDown and playback move
    along the list as shown, as DIVE steps through an image sequence."""
    window = make_window(make_image_set(tmp_path, {"img03": 1, "img07": 1}))
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    s = window.state
    assert s.video["id"] == "set/img00"

    def current():
        return s.video["id"].removeprefix("set/")

    for key, modifier, expected in ((Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, "img01"),
                                    (Qt.Key.Key_F, Qt.KeyboardModifier.NoModifier, "img02"),
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier, "img01"),
                                    (Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier, "img11"),  # clamped
                                    (Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier, "img01"),
                                    (Qt.Key.Key_PageDown, Qt.KeyboardModifier.NoModifier, "img03"),
                                    (Qt.Key.Key_PageDown, Qt.KeyboardModifier.NoModifier, "img07"),
                                    (Qt.Key.Key_PageDown, Qt.KeyboardModifier.NoModifier, "img07"),  # the last
                                    (Qt.Key.Key_PageUp, Qt.KeyboardModifier.NoModifier, "img03"),
                                    (Qt.Key.Key_End, Qt.KeyboardModifier.NoModifier, "img11"),
                                    (Qt.Key.Key_Home, Qt.KeyboardModifier.NoModifier, "img00")):
        QTest.keyClick(window, key, modifier)
        assert current() == expected, (key, modifier)
    assert window.frame_label.text().startswith("image 1 / 12 of set  [none]  set/img00")
    QTest.keyClick(window, Qt.Key.Key_PageDown)
    assert window.frame_label.text().startswith("image 4 / 12 of set  [full]  set/img03")
    window.videos.sortItems(0, Qt.SortOrder.DescendingOrder)   # the list as the user sorted it
    QTest.keyClick(window, Qt.Key.Key_Right)
    assert current() == "img02"

    window.speed.setCurrentText("4x")
    QTest.keyClick(window, Qt.Key.Key_Space)   # plays through to the end of the list, then stops
    qtbot.waitUntil(lambda: not window.play_timer.isActive(), timeout=5000)
    assert current() == "img00"


def test_the_timeline_of_an_image_spans_its_folder(make_window, tmp_path, qtbot):
    """On an image the strip has a bar per image of its folder and marks its labeled images; a click
    opens the image under it."""
    window = make_window(make_image_set(tmp_path, {"img03": 2, "img07": 1}))
    timeline, s = window.timeline, window.state
    assert list(timeline.totals) == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]
    assert sorted(timeline.marks) == [(3, "full"), (7, "full")]
    assert timeline._position() == 0
    width = timeline.width()
    QTest.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(width * 7.5 / 12), 20))
    assert s.video["id"] == "set/img07" and timeline._position() == 7
    window.step(1)
    assert timeline._position() == 8
    s.add_box("urchin", (30, 30, 40, 40))   # a label edit recounts the folder
    assert timeline.totals[8] == 1


def test_images_are_listed_and_stepped_through_by_folder(make_window, tmp_path, qtbot):
    """The list groups images under their folder, as DIVE lists an image sequence: the folder's row
    sums its images; stepping, Home/End and PgUp/PgDown stay within the folder, which the counts,
    finder and timeline cover; choosing a folder opens its first image."""
    window = make_window(make_image_set(tmp_path, {"img1": 2}, names=("img0", "img1", "img2"),
                                        folders=("left", "right")))
    videos, s = window.videos, window.state
    assert videos.topLevelItemCount() == 2
    left, right = videos.topLevelItem(0), videos.topLevelItem(1)
    assert [left.text(c) for c in range(5)] == ["left", "none", "", "3", "0 / 1"]
    assert [left.child(i).text(0) for i in range(3)] == ["img0", "img1", "img2"]
    assert s.video["id"] == "left/img0" and videos.currentItem() is videos.item("left/img0")

    assert window.step(5) and s.video["id"] == "left/img2"     # clamped to the folder's last image
    assert not window.step(1) and s.video["id"] == "left/img2"
    assert window.step(-window._sequence_length()) and s.video["id"] == "left/img0"   # Home
    window.jump_labeled(+1)
    assert s.video["id"] == "left/img1"
    window.jump_labeled(+1)
    assert s.video["id"] == "left/img1"                       # none after it in this folder

    s.set_frame_status("partial")   # a label edit recounts the image's row and its folder's
    assert videos.item("left/img1").text(4) == "1 / 0" and left.text(4) == "1 / 0"
    assert right.text(4) == "0 / 1"

    videos.setCurrentItem(right)    # a folder opens its first image and stays chosen
    assert s.video["id"] == "right/img0" and videos.currentItem() is right
    assert list(window.timeline.totals) == [0, 2, 0]           # the timeline spans that folder
    window.step(1)
    assert s.video["id"] == "right/img1" and videos.currentItem() is videos.item("right/img1")
    videos.setCurrentItem(right)    # the image open is in it: it stays open
    assert s.video["id"] == "right/img1"


def test_the_list_sorts_ids_in_natural_order_and_numbers_as_numbers(make_window, tmp_path):
    """img2 before img10, as DIVE numbers an image folder, so stepping and the timeline agree; the
    Labeled column sorts by labeled frames."""
    window = make_window(make_image_set(tmp_path, {"img10": 1}, names=("img1", "img2", "img10", "img9")))
    videos = window.videos

    def order():
        folder = videos.topLevelItem(0)
        return [folder.child(i).text(0) for i in range(folder.childCount())]

    assert order() == ["img1", "img2", "img9", "img10"]
    window.step(1)
    assert window.state.video["id"] == "set/img2" and window.timeline._position() == 1
    videos.sortItems(4, Qt.SortOrder.DescendingOrder)
    assert order()[0] == "img10"


def test_the_frames_column_sorts_as_numbers(make_window, tmp_path):
    from bpr.data.store import Project

    with Project.create(tmp_path / "p") as project:
        for vid, frames in (("a", 100), ("b", 9), ("c", 10)):
            project.conn.execute("INSERT INTO videos (id, frame_count) VALUES (?, ?)", (vid, frames))
    videos = make_window(tmp_path / "p").videos
    videos.sortItems(3, Qt.SortOrder.AscendingOrder)
    assert [videos.topLevelItem(i).text(3) for i in range(3)] == ["9", "10", "100"]


def test_playback_at_speed(window, qtbot):
    s = window.state
    s.set_frame(0)
    window.speed.setCurrentText("4x")
    QTest.keyClick(window, Qt.Key.Key_Space)
    assert window.play_timer.isActive() and window.play_timer.interval() == int(1000 / (30 * 4))
    qtbot.waitUntil(lambda: s.frame >= 5, timeout=5000)
    QTest.keyClick(window, Qt.Key.Key_Space)
    assert not window.play_timer.isActive()


def test_brightness_and_contrast_change_the_view_only(window):
    before = window.view.pixmap_item.pixmap().toImage().pixelColor(300, 180)
    window.brightness.setValue(60)
    after = window.view.pixmap_item.pixmap().toImage().pixelColor(300, 180)
    assert after.lightness() > before.lightness()
    assert window.image_button.text() == "Image (adjusted)"  # the sliders are in its drop-down
    window.brightness.setValue(0)
    assert window.image_button.text() == "Image"
    assert window.state.project.summary()["boxes"] > 0  # nothing about the data changed


def test_missing_video_is_shown_and_can_be_linked(window, tmp_path):
    s = window.state
    vid = s.project.videos("test")[0]["id"]
    original = s.project.resolve_path(s.project.video(vid)["path"])
    moved = tmp_path / "moved.mp4"
    shutil.move(original, moved)
    s.project.set_video_file(vid, None, None, "missing", f"{original}: no such file")
    s.reload()
    item = window.videos.findItems(vid, Qt.MatchFlag.MatchExactly, 0)[0]
    assert item.text(2) == "missing" and "link video" in item.toolTip(0)
    s.set_video(vid)
    assert window.view.pixmap_item.pixmap().width() > 0  # a placeholder, no crash
    assert window.videos.link(vid, str(moved)) == "ok"
    assert window.videos.findItems(vid, Qt.MatchFlag.MatchExactly, 0)[0].text(2) == "ok"


def test_linking_a_file_with_other_frames_keeps_the_labels_count_and_says_so(window):
    s = window.state
    vid = s.project.videos("test")[0]["id"]
    frames = s.project.video(vid)["frame_count"]
    other = s.project.videos("train")[0]  # another video, of another length
    assert other["frame_count"] != frames
    messages = []
    s.statusMessage.connect(messages.append)
    assert window.videos.link(vid, str(s.project.resolve_path(other["path"]))) == "ok"
    assert messages == [f"{vid}: the file has {other['frame_count']} frames, the annotations {frames}"]
    assert s.project.video(vid)["frame_count"] == frames


def test_a_moved_image_folder_is_found_again(make_window, tmp_path, qtbot):
    """The images went to another drive: opening the project shows them missing (once the files are
    looked at, off the GUI thread), and the list's menu finds them under the folder chosen."""
    window = make_window(make_image_set(tmp_path, {"img1": 1}, names=("img0", "img1", "img2")))
    (tmp_path / "drive").mkdir()
    shutil.move(tmp_path / "set", tmp_path / "drive" / "set")
    window.open_project(window.state.project.folder)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith(
        "3 file(s) are gone since the project was last open"))
    assert window.videos.item("set/img1").text(2) == "missing"
    messages = []
    window.state.statusMessage.connect(messages.append)
    result = window.videos.find_files(str(tmp_path / "drive"))
    assert sorted(result["linked_images"]) == ["set/img0", "set/img1", "set/img2"]
    assert messages[-1] == "linked 3 images; 0 still missing"
    project = window.state.project
    assert project.resolve_path(project.video("set/img1")["path"]) == tmp_path / "drive" / "set" / "img1.png"
    assert window.videos.item("set/img1").text(2) == "ok"


def test_when_the_shown_file_turns_out_gone_the_first_readable_one_is_shown(make_window, tmp_path, qtbot):
    window = make_window(make_image_set(tmp_path, {"img1": 1}, names=("img0", "img1")))
    qtbot.waitUntil(lambda: not window.workers)  # the check on opening, lest it see the file go
    (tmp_path / "set" / "img0.png").unlink()  # the store still says ok until the files are looked at
    window.open_project(window.state.project.folder)
    assert window.state.video["id"] == "set/img0"
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("1 file(s) are gone"))
    assert window.state.video["id"] == "set/img1"


def test_a_file_check_of_a_project_no_longer_open_changes_nothing(make_window, tmp_path, demo_template):
    window = make_window(make_image_set(tmp_path, {"img1": 1}, names=("img0", "img1")))
    earlier = window.state.project.folder
    shutil.copytree(demo_template, tmp_path / "other")
    window.open_project(tmp_path / "other")
    messages = []
    window.state.statusMessage.connect(messages.append)
    window.state.files_checked(earlier, {"gone": ["set/img1"], "back": []})  # it came after the other opened
    assert messages == []
    window.state.files_checked(window.state.project.folder, {"gone": ["set/img1"], "back": []})
    assert messages[0].startswith("1 file(s) are gone")


def test_zoom_survives_a_resize_and_fit_restores(window, qtbot):
    window.view.fit()
    fitted = window.view.transform().m11()
    window.view.zoom(2.0)
    window.resize(window.width() - 50, window.height())
    QApplication.processEvents()  # deliver the resize
    assert window.view.transform().m11() > 1.5 * fitted
    window.view.fit()
    assert abs(window.view.transform().m11() - fitted) < 0.2 * fitted


def test_importing_a_dive_image_csv_asks_for_the_images_folder(window, qtbot, tmp_path, monkeypatch):
    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    csv_path, folder = tmp_path / "dive.csv", tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "img7.png")
    csv_path.write_text("1,img7.png,0,2,3,20,30,0.8,-1,urchin,0.8\n")
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(csv_path), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a: asked.append(a[1:]) or str(folder))
    with qtbot.waitSignal(window.import_dialog("viame").finished, timeout=30000):
        pass
    title = "Folder with the images the CSV names (cancel: beside the CSV, or where the project has them)"
    assert asked == [(title, str(tmp_path))]
    [box] = window.state.project.boxes("shots/img7", 0)
    assert (box["species"], box["x1"], box["y2"]) == ("urchin", 2, 30)
    assert window.videos.item("shots/img7").parent().text(0) == "shots"


def test_importing_a_viame_csv_asks_whether_it_replaces_the_labels(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from bpr.data.formats import export_viame

    project = window.state.project
    video = project.videos("train")[0]["id"]
    [csv_path] = export_viame(project, tmp_path, videos=[video])
    assert csv_path.stem == video
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:-1]))   # the last box deleted in DIVE
    count = len(lines) - 3
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(csv_path), ""))
    asked = []

    def answer(choice):
        def click(box):
            asked.append([b.text() for b in box.buttons()])
            if choice:
                next(b for b in box.buttons() if b.text() == choice).click()
            else:
                box.button(QMessageBox.StandardButton.Cancel).click()
        monkeypatch.setattr(QMessageBox, "exec", click)

    def boxes():
        return project.conn.execute("SELECT count(*) FROM boxes WHERE video_id = ?", (video,)).fetchone()[0]

    answer(None)
    assert window.import_dialog("viame") is None   # cancelled: nothing imported
    answer("Add new boxes")
    with qtbot.waitSignal(window.import_dialog("viame").finished, timeout=30000):
        pass
    assert boxes() == count + 1   # added nothing: every box was there
    answer("Replace labels")
    with qtbot.waitSignal(window.import_dialog("viame").finished, timeout=30000):
        pass
    assert boxes() == count
    assert sorted(asked[0]) == ["Add new boxes", "Cancel", "Replace labels"]


def test_a_registered_format_is_in_the_import_and_export_menus(make_window, demo_template, qtbot, tmp_path,
                                                                monkeypatch):
    """One registry entry (bpr.data.registry) puts a format in the menus, with its dialogs."""
    from PySide6.QtWidgets import QFileDialog

    from bpr.data.registry import FORMATS, register
    from tests.bpr.test_formats_registry import TOY

    register(TOY)
    try:
        window = make_window(demo_template)
    finally:
        FORMATS.pop("toy")
    [file_menu] = [a.menu() for a in window.menuBar().actions() if a.text() == "&File"]
    submenus = {a.text(): a.menu() for a in file_menu.actions() if a.menu() is not None}
    assert "Toy boxes..." in [a.text() for a in submenus["&Import"].actions()]
    assert "Toy boxes..." in [a.text() for a in submenus["&Export"].actions()]

    source = tmp_path / "toy-clip.txt"
    source.write_text("urchin 1 2 30 40\n")
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: asked.append(a[1:]) or (str(source), ""))
    monkeypatch.setitem(FORMATS, "toy", TOY)
    with qtbot.waitSignal(window.import_dialog("toy").finished, timeout=30000):
        pass
    assert asked == [("Import Toy boxes", "", "Toy (*.txt)")]
    [box] = window.state.project.boxes("toy-clip", 0)
    assert (box["species"], box["x2"]) == ("urchin", 30)
    assert window.state.project.frame_status("toy-clip", 0) == "partial"


def test_the_timeline_stacks_counts_by_species_and_has_a_frame_ruler(window):
    """DIVE's detection histogram: a frame's bar is its species' counts stacked in their colours; the ruler's
    ticks fall every 1, 2 or 5 x 10^k frames, far enough apart to read."""
    from app.timeline import TICK_PX, tick_step

    s, timeline = window.state, window.timeline
    s.set_video(s.project.videos("train")[0]["id"])
    labeled = [f["frame_index"] for f in s.labeled_frames()]
    species = {b["species"] for f in labeled for b in s.project.boxes(s.video["id"], f)}
    assert set(timeline.species) == species and timeline.counts.shape == (s.frame_count, len(species))
    frame = labeled[0]
    per_species = dict(zip(timeline.species, timeline.counts[frame]))
    boxes = s.project.boxes(s.video["id"], frame)
    assert per_species == {name: sum(b["species"] == name for b in boxes) for name in species}
    assert tick_step(1000, 700) == 100 and tick_step(1000, 1400) == 50 and tick_step(12, 1000) == 1
    assert all(tick_step(n, w) * w / n >= TICK_PX for n, w in ((54000, 900), (300, 640), (7, 70)))
    timeline.grab()  # paints without error
