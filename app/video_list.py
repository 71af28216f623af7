"""The video list: split, status, frame count, labeled frames; missing videos can be linked."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor
from PySide6.QtWidgets import QFileDialog, QMenu, QTreeWidget, QTreeWidgetItem

from app.state import ProjectState
from bpr.media import VIDEO_EXTENSIONS, natural_key, probe_status

COLUMNS = ["Video", "Split", "Status", "Frames", "Labeled"]  # labeled: partial / full frames
# The id column's widest, in digits: DUSIA's 20-digit ids fit; longer ids (image paths) are elided at
# the end, which keeps their folder and the start of the file name (a timecode, in exported frames).
ID_CHARS = 30
LABELED_ROLE = Qt.ItemDataRole.UserRole + 1   # an item's number of labeled frames


def _labeled(counts: dict[str, int]) -> str:
    """The Labeled column: partial / full frame counts."""
    return f"{counts.get('partial', 0)} / {counts.get('full', 0)}"


class _Row(QTreeWidgetItem):
    """A row that sorts ids in natural order (``img2`` before ``img10``: the order DIVE numbers an
    image folder in, so stepping through images agrees with the timeline), frame counts as numbers and
    the Labeled column by labeled frames."""

    def __init__(self, tree: VideoList, texts: list[str], labeled: int):
        super().__init__(texts)
        self.tree = tree
        self.key = natural_key(texts[0])
        self.setData(0, LABELED_ROLE, labeled)

    def __lt__(self, other: _Row) -> bool:
        column = self.tree.sort_column  # a Python attribute: asking Qt doubled the time to sort 20,000 rows
        if column == 3:
            return (int(self.text(3) or -1), self.key) < (int(other.text(3) or -1), other.key)
        if column == 4:
            return (self.data(0, LABELED_ROLE), self.key) < (other.data(0, LABELED_ROLE), other.key)
        if column in (1, 2):
            return (self.text(column), self.key) < (other.text(column), other.key)
        return self.key < other.key


class VideoList(QTreeWidget):
    linkRequested = Signal(str)

    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setHeaderLabels(COLUMNS)
        self.headerItem().setToolTip(4, "labeled frames: partial / full")
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)
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
        p = self.state.project
        counts = {}
        for vid, status, n in p.conn.execute(
                "SELECT video_id, label_status, count(*) FROM frames GROUP BY video_id, label_status"):
            counts.setdefault(vid, {})[status] = n
        for v in p.videos():
            c = counts.get(v["id"], {})
            item = _Row(self, [v["id"], v["split"], v["status"], str(v["frame_count"] or ""), _labeled(c)],
                        sum(c.values()))
            item.setData(0, Qt.ItemDataRole.UserRole, v["id"])
            for col in (3, 4):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
            item.setToolTip(0, v["id"])
            if v["status"] != "ok":
                for col in range(len(COLUMNS)):
                    item.setForeground(col, QBrush(QColor("#999999")))
                item.setToolTip(0, f"{v['id']}\n{v['status']}: {v['status_reason'] or 'no file linked'} "
                                   "(right-click: link video...)")
            self.addTopLevelItem(item)
        self.header().setStretchLastSection(False)
        for col in range(len(COLUMNS)):
            self.resizeColumnToContents(col)
        self.setColumnWidth(0, min(self.columnWidth(0), self.fontMetrics().horizontalAdvance("0" * ID_CHARS)))
        self.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.blockSignals(False)
        self._select()

    def sizeHint(self) -> QSize:
        """Wide enough for every column, so the window opens with the labeled counts in view. (Not a
        minimum: on a small screen the list may be narrowed, and scrolls.)"""
        width = (sum(self.columnWidth(c) for c in range(len(COLUMNS))) + 2 * self.frameWidth()
                 + self.verticalScrollBar().sizeHint().width())
        return QSize(width, super().sizeHint().height())

    def _update_counts(self):
        if self.state.video:
            vid = self.state.video["id"]
            c = dict(self.state.project.conn.execute(
                "SELECT label_status, count(*) FROM frames WHERE video_id = ? GROUP BY 1", (vid,)).fetchall())
            for item in self.findItems(vid, Qt.MatchFlag.MatchExactly, 0):
                item.setText(4, _labeled(c))
                item.setData(0, LABELED_ROLE, sum(c.values()))

    def _select(self, *_):
        if not self.state.video:
            return
        self.blockSignals(True)
        for item in self.findItems(self.state.video["id"], Qt.MatchFlag.MatchExactly, 0):
            self.setCurrentItem(item)
        self.blockSignals(False)

    def position(self) -> tuple[int, int]:
        """The current item's place in the list as shown (0-based) and the number of items."""
        return self.indexOfTopLevelItem(self.currentItem()), self.topLevelItemCount()

    def step(self, delta: int) -> bool:
        """Choose the item ``delta`` rows away in the list as shown (sorted as the user chose), clamped to
        its ends; False when there is none to move to. Image sets step this way: each image is an item."""
        row, count = self.position()
        target = max(0, min(row + delta, count - 1))
        if row < 0 or target == row:
            return False
        self.setCurrentItem(self.topLevelItem(target))
        return True

    def jump_labeled(self, direction: int) -> bool:
        """Choose the next (+1) or previous (-1) item with a labeled frame; False when there is none."""
        row, count = self.position()
        rows = range(row + 1, count) if direction > 0 else range(row - 1, -1, -1)
        target = next((r for r in rows if self.topLevelItem(r).data(0, LABELED_ROLE)), None)
        if row < 0 or target is None:
            return False
        self.setCurrentItem(self.topLevelItem(target))
        return True

    def _chosen(self, item, _previous):
        if item is not None:
            self.state.set_video(item.data(0, Qt.ItemDataRole.UserRole))

    def _menu(self, pos):
        item = self.itemAt(pos)
        if item is None:
            return
        vid = item.data(0, Qt.ItemDataRole.UserRole)
        menu = QMenu(self)
        action = QAction("Link video file...", menu)
        action.triggered.connect(lambda: self.link(vid))
        menu.addAction(action)
        menu.exec(self.viewport().mapToGlobal(pos))

    def link(self, video_id: str, path: str | None = None) -> str:
        """Link a file to a video; returns the resulting status ('ok', 'unreadable' or 'missing')."""
        if path is None:
            patterns = " ".join(f"*{e}" for e in VIDEO_EXTENSIONS)
            path, _ = QFileDialog.getOpenFileName(self, f"Video file for {video_id}", "",
                                                  f"Videos ({patterns});;All files (*)")
            if not path:
                return "missing"
        info, status, reason = probe_status(path)
        self.state.project.set_video_file(video_id, path, info, status, reason)
        if status != "ok":
            self.state.statusMessage.emit(f"{video_id}: {reason}")
        self.state.reload()
        return status
