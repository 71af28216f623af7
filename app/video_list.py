"""The video list: split, status, frame count, labeled frames; missing videos can be linked.

Images are grouped under their folder, as DIVE lists an image folder as one sequence: the folder's row
sums its images, and stepping through images stays within the folder, which is what the counts, the
missing-label finder and the timeline cover on an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QFileDialog, QMenu, QStyle, QStyledItemDelegate, QTreeWidget, QTreeWidgetItem

from app.state import ProjectState
from bpr.data.link import link_video
from bpr.data.media import VIDEO_EXTENSIONS, natural_key

COLUMNS = ["Video", "Split", "Status", "Frames", "Partial/full"]  # labeled frames: partial / full
# The id column's widest, in digits: DUSIA's 20-digit ids fit; longer ids (image paths) are elided at
# the end, which keeps their folder and the start of the file name (a timecode, in exported frames).
ID_CHARS = 30
STATUS_COLUMN = 2
MIN_ID_CHARS = 8  # shown of every id (past a folder's indentation); a list narrowed further scrolls
# The columns a narrow list (a laptop's window) hides, in this order, before it elides the ids past
# MIN_ID_CHARS: an image's frame count is 1, and a folder of images is most often named by its split
# (the Split column stays where videos are listed: their ids do not say it). Every row's tooltip
# still says them.
NARROW_HIDES = (3, 1)  # Frames, then Split
LABELED_ROLE = Qt.ItemDataRole.UserRole + 1   # an item's number of labeled frames
SHARED_ROLE = Qt.ItemDataRole.UserRole + 2    # the characters an id shares with every row beside it
MIN_SHARED = 4  # fewer shared characters are shown as they are ("…" would save little)


def _labeled(counts: dict[str, int]) -> str:
    """The Partial / full column: labeled frames by status."""
    return f"{counts.get('partial', 0)} / {counts.get('full', 0)}"


def _splits(values) -> str:
    """The split of a folder's images: theirs when they share one, else the splits it mixes."""
    return "/".join(sorted(set(v or "" for v in values)))


class _Row(QTreeWidgetItem):
    """A row that sorts ids in natural order (``img2`` before ``img10``: the order DIVE numbers an
    image folder in, so stepping through images agrees with the timeline), frame counts as numbers and
    the Partial / full column by labeled frames. A video's or an image's row has its id; a folder's has none."""

    def __init__(self, tree: VideoList, texts: list[str], video_id: str | None = None):
        super().__init__(texts)
        self.tree = tree
        self.key = natural_key(texts[0])
        self.setData(0, Qt.ItemDataRole.UserRole, video_id)
        for col in (3, 4):
            self.setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
        self.set_counts({})

    def set_counts(self, counts: dict[str, int]) -> None:
        """Labeled frames by status ('partial', 'full')."""
        self.counts = counts
        self.setText(4, _labeled(counts))
        self.setData(0, LABELED_ROLE, sum(counts.values()))

    def __lt__(self, other: _Row) -> bool:
        column = self.tree.sort_column  # a Python attribute: asking Qt doubled the time to sort 20,000 rows
        if column == 3:
            return (int(self.text(3) or -1), self.key) < (int(other.text(3) or -1), other.key)
        if column == 4:
            return (self.data(0, LABELED_ROLE), self.key) < (other.data(0, LABELED_ROLE), other.key)
        if column in (1, 2):
            return (self.text(column), self.key) < (other.text(column), other.key)
        return self.key < other.key


def _text_margins(style: QStyle) -> int:
    """The room an item view leaves beside a cell's text, both sides together (Qt's common style: the
    focus frame's margin and a pixel, each side)."""
    return 2 * (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1)


class _IdDelegate(QStyledItemDelegate):
    """Draws an id too wide for its column without the start it shares with the rows beside it
    ("…09300000" for DUSIA's 00002026112409300000, whose first 12 digits every video of a day shares),
    then elided at the end: the part that tells the rows apart stays in view."""

    def initStyleOption(self, option, index):
        super().initStyleOption(option, index)
        shared = index.data(SHARED_ROLE) or 0
        margin = _text_margins(option.widget.style()) if option.widget else 0
        if shared and option.fontMetrics.horizontalAdvance(option.text) > option.rect.width() - margin:
            option.text = "…" + option.text[shared:]


def _mark_shared(rows: list[_Row]) -> None:
    """Each row's SHARED_ROLE: how much of its id the start all of ``rows`` share is, when that is worth
    eliding (MIN_SHARED characters or more, with something left after it)."""
    texts = [row.text(0) for row in rows]
    shared = len(os.path.commonprefix(texts)) if len(texts) > 1 else 0
    for row, text in zip(rows, texts):
        row.setData(0, SHARED_ROLE, shared if MIN_SHARED <= shared < len(text) else 0)


class VideoList(QTreeWidget):
    linkRequested = Signal(str)

    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setHeaderLabels(COLUMNS)
        self.headerItem().setToolTip(4, "labeled frames: partial (some animals unboxed: training keyframes) / full "
                                        "(every animal boxed: val and test)")
        self._items: dict[str, _Row] = {}   # video or image id -> its row
        self.id_width = 0                   # what the id column needs (it gets less in a narrow list)
        self.id_indent = 0                  # of it, a folder's indentation and the margins
        self.hidden_for_room: list[int] = []  # NARROW_HIDES hidden, in the order they went
        self.narrow_hides = NARROW_HIDES[:1]  # of them, those this project's list may hide
        self.setAlternatingRowColors(True)
        self.setItemDelegateForColumn(0, _IdDelegate(self))
        self.sort_column = 0
        # connected before sorting is enabled, so that it runs before Qt's own sort on the same signal
        self.header().sortIndicatorChanged.connect(lambda column, _order: setattr(self, "sort_column", column))
        self.setSortingEnabled(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.currentItemChanged.connect(self._chosen)
        state.projectChanged.connect(self.reload)
        state.labelsChanged.connect(self._update_counts)
        state.videoChanged.connect(self._select)

    def reload(self):
        self.blockSignals(True)
        self.clear()
        self._items = {}
        p = self.state.project
        counts = p.label_status_counts()
        folders, folder_rows = {}, []
        for sequence in self.state.image_sequences():
            folder = _Row(self, [sequence.name, _splits(i["split"] for i in sequence.images), "",
                                 str(len(sequence.images)), ""])
            folder.setToolTip(0, f"{sequence.name}: a folder of {len(sequence.images)} images")
            folders.update((vid, folder) for vid in sequence.frames)
            folder_rows.append(folder)
            self.addTopLevelItem(folder)
        for v in p.videos():
            folder = folders.get(v["id"])
            shown = v["id"].removeprefix(folder.text(0) + "/") if folder else v["id"]
            item = _Row(self, [shown, v["split"], v["status"], str(v["frame_count"] or ""), ""], v["id"])
            item.set_counts(counts.get(v["id"], {}))
            about = f"split: {v['split'] or 'none'}" + (f", {v['frame_count']} frames" if v["kind"] == "video"
                                                          and v["frame_count"] else "")
            item.setToolTip(0, f"{v['id']}\n{about}")
            if v["status"] != "ok":
                for col in range(len(COLUMNS)):
                    item.setForeground(col, QBrush(QColor("#999999")))
                action = "link video file" if v["kind"] == "video" else "find missing files in a folder"
                item.setToolTip(0, f"{v['id']}\n{about}\n{v['status']}: {v['status_reason'] or 'no file linked'} "
                                   f"(right-click: {action}...)")
            self._items[v["id"]] = item
            if folder:
                folder.addChild(item)
            else:
                self.addTopLevelItem(item)
        for folder in folder_rows:
            self._sum(folder)
            _mark_shared([folder.child(i) for i in range(folder.childCount())])
        _mark_shared([self.topLevelItem(i) for i in range(self.topLevelItemCount())])
        self.setRootIsDecorated(bool(folder_rows))
        self.header().setStretchLastSection(False)
        for column in (STATUS_COLUMN, *NARROW_HIDES):  # (Qt resizing a hidden column leaves a gap where it was)
            self.setColumnHidden(column, False)
        for col in range(1, len(COLUMNS)):
            self.resizeColumnToContents(col)
        # the files' status only when one is not ok: the list stays narrow, and the frame keeps the room
        all_ok = all(item.text(STATUS_COLUMN) in ("ok", "") for item in self._items.values())
        self.setColumnHidden(STATUS_COLUMN, all_ok)
        self.hidden_for_room = []
        self.narrow_hides = NARROW_HIDES if folder_rows and all(i.parent() for i in self._items.values()) \
            else NARROW_HIDES[:1]
        # Worked out, not asked of Qt: it measures only the rows in view, and a folder's are collapsed.
        metrics, indent = self.fontMetrics(), self.indentation()
        widest = max([metrics.horizontalAdvance(f.text(0)) for f in folder_rows]
                     + [metrics.horizontalAdvance(i.text(0)) + (indent if i.parent() else 0)
                        for i in self._items.values()], default=0)
        margin = _text_margins(self.style()) + 4
        self.id_indent = (indent if folder_rows else 0) + margin
        self.id_width = self.id_indent + min(widest, metrics.horizontalAdvance("0" * ID_CHARS))
        self._fit_ids()
        self.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.blockSignals(False)
        self._select()

    def item(self, video_id: str) -> _Row | None:
        """The row of a video or an image."""
        return self._items.get(video_id)

    @staticmethod
    def _sum(folder: _Row) -> None:
        total: dict[str, int] = {}
        for i in range(folder.childCount()):
            for status, n in folder.child(i).counts.items():
                total[status] = total.get(status, 0) + n
        folder.set_counts(total)

    def _others(self) -> int:
        return sum(self.columnWidth(c) for c in range(1, len(COLUMNS)) if not self.isColumnHidden(c))

    def _fit_ids(self) -> None:
        """The id column takes what the others leave, up to the width its ids need: in a narrow list the
        ids are elided, and the counts stay in view; narrower, NARROW_HIDES go before the ids shrink
        past MIN_ID_CHARS."""
        least = self.id_indent + self.fontMetrics().horizontalAdvance("0" * MIN_ID_CHARS + "…")
        room = self.viewport().width()
        while self.hidden_for_room and room - self._others() - self.columnWidth(self.hidden_for_room[-1]) >= least:
            self.setColumnHidden(self.hidden_for_room.pop(), False)
        for column in self.narrow_hides:
            if room - self._others() >= least:
                break
            if not self.isColumnHidden(column):
                self.setColumnHidden(column, True)
                self.hidden_for_room.append(column)
        self.setColumnWidth(0, max(least, min(self.id_width, room - self._others())))

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit_ids()

    def sizeHint(self) -> QSize:
        """Wide enough for every column, so the window opens with the labeled counts in view. (Not a
        minimum: on a small screen the list may be narrowed, and scrolls.)"""
        others = sum(self.columnWidth(c) for c in range(1, len(COLUMNS))
                     if not self.isColumnHidden(c) or c in self.hidden_for_room)
        width = (self.id_width + others + 2 * self.frameWidth()
                 + self.verticalScrollBar().sizeHint().width())
        return QSize(width, super().sizeHint().height())

    def _update_counts(self):
        item = self.item(self.state.video["id"]) if self.state.video else None
        if item is None:
            return
        video_id = item.data(0, Qt.ItemDataRole.UserRole)
        item.set_counts(self.state.project.label_status_counts(video_id).get(video_id, {}))
        if item.parent():
            self._sum(item.parent())

    def _select(self, *_):
        item = self.item(self.state.video["id"]) if self.state.video else None
        current = self.currentItem()
        if item is None or (current is not None and current in (item, item.parent())):
            return  # shown already (a folder's row may stay chosen for its images)
        self.blockSignals(True)
        self.setCurrentItem(item)
        self.blockSignals(False)

    def _siblings(self) -> tuple[int, int, Callable[[int], _Row]]:
        """The current video's or image's place among the rows it steps through (0-based; -1 when none),
        their number, and the row at a place, as shown: an image's folder, or the list's top rows."""
        item = self.item(self.state.video["id"]) if self.state.video else None
        parent = item.parent() if item else None
        if parent:
            return parent.indexOfChild(item), parent.childCount(), parent.child
        return self.indexOfTopLevelItem(item) if item else -1, self.topLevelItemCount(), self.topLevelItem

    def position(self) -> tuple[int, int]:
        """The current video's or image's place (0-based) and the number of rows it steps through."""
        row, count, _ = self._siblings()
        return row, count

    def step(self, delta: int) -> bool:
        """Choose the row ``delta`` rows away in the list as shown (sorted as the user chose), clamped to
        the ends of the image's folder; False when there is none to move to. Images step this way."""
        row, count, at = self._siblings()
        target = max(0, min(row + delta, count - 1))
        if row < 0 or target == row:
            return False
        self.setCurrentItem(at(target))
        return True

    def jump_labeled(self, direction: int) -> bool:
        """Choose the next (+1) or previous (-1) image of the folder with a labeled frame; False when none."""
        row, count, at = self._siblings()
        rows = range(row + 1, count) if direction > 0 else range(row - 1, -1, -1)
        target = next((r for r in rows if at(r).data(0, LABELED_ROLE)), None)
        if row < 0 or target is None:
            return False
        self.setCurrentItem(at(target))
        return True

    def _chosen(self, item, _previous):
        """A video or an image opens; a folder opens its first image, unless the image open is in it."""
        if item is None:
            return
        if item.data(0, Qt.ItemDataRole.UserRole) is None:
            current = self.item(self.state.video["id"]) if self.state.video else None
            if item.childCount() == 0 or (current is not None and current.parent() is item):
                return
            item = item.child(0)
        self.state.set_video(item.data(0, Qt.ItemDataRole.UserRole))

    def _menu(self, pos):
        item = self.itemAt(pos)
        if item is None:
            return
        vid = item.data(0, Qt.ItemDataRole.UserRole)
        menu = QMenu(self)
        if vid is not None and self.state.project.video(vid)["kind"] == "video":
            menu.addAction("Link video file...", lambda: self.link(vid))
        menu.addAction("Find missing files in a folder...", self.find_files)
        menu.exec(self.viewport().mapToGlobal(pos))

    def find_files(self, folder: str | None = None) -> dict[str, list[str]]:
        """Link the videos and images that have no file, or whose file is gone, to the files found in a
        folder (bpr.data.link.link_videos): for a moved image set, its new root folder."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder holding the missing videos or images")
            if not folder:
                return {}
        from bpr.data.link import describe_links, link_videos  # not needed to show the window

        result = link_videos(self.state.project, folder)
        self.state.statusMessage.emit(describe_links(result))
        self.state.reload()
        return result

    def link(self, video_id: str, path: str | None = None) -> str:
        """Link a file to a video; returns the resulting status ('ok', 'unreadable' or 'missing')."""
        if path is None:
            patterns = " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
            path, _ = QFileDialog.getOpenFileName(self, f"Video file for {video_id}", "",
                                                  f"Videos ({patterns});;All files (*)")
            if not path:
                return "missing"
        status, problem = link_video(self.state.project, video_id, path)
        if problem:
            self.state.statusMessage.emit(problem)
        self.state.reload()
        return status
