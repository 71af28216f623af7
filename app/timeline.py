"""The timeline: a per-frame count strip, marks on labeled frames, the current frame; click to seek."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.state import ProjectState

STATUS_COLORS = {"partial": QColor("#f0a030"), "full": QColor("#40c070")}


class Timeline(QWidget):
    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.counts = np.zeros(0)
        self.marks: list[tuple[int, str]] = []
        self.setMinimumHeight(46)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Counts per frame (detections at the confidence threshold, else labels); "
                        "orange marks: partial frames, green: full frames. Click or drag to seek.")
        state.videoChanged.connect(self.reload)
        state.labelsChanged.connect(self.reload)
        state.detectionsChanged.connect(self.reload)
        state.confSettled.connect(self.reload)
        state.frameChanged.connect(self.update)

    def reload(self, *_):
        s = self.state
        n = s.frame_count
        self.counts = np.zeros(n)
        self.marks = []
        if not s.video or not n:
            self.update()
            return
        vid = s.video["id"]
        if s.run:
            rows = s.project.conn.execute(
                "SELECT d.frame_index, count(*) FROM detections d JOIN runs r ON r.id = d.run_id "
                "WHERE r.name = ? AND d.video_id = ? AND d.confidence >= ? GROUP BY d.frame_index",
                (s.run, vid, s.conf)).fetchall()
        else:
            rows = []
        if not rows:
            rows = s.project.conn.execute(
                "SELECT frame_index, count(*) FROM boxes WHERE video_id = ? GROUP BY frame_index", (vid,)
            ).fetchall()
        for frame, count in rows:
            if 0 <= frame < n:
                self.counts[frame] = count
        self.marks = [(f["frame_index"], f["label_status"]) for f in s.labeled_frames()]
        self.update()

    def _x(self, frame: float) -> float:
        n = max(self.state.frame_count, 1)
        return frame / n * self.width()

    def paintEvent(self, event):
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1b2026"))
        h = self.height()
        n = len(self.counts)
        if n:
            peak = max(self.counts.max(), 1)
            bins = min(n, max(self.width(), 1))
            edges = np.linspace(0, n, bins + 1).astype(int)
            maxima = np.maximum.reduceat(self.counts, edges[:-1]) if n else np.zeros(0)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#4a90c8"))
            width = self.width() / bins
            for i, value in enumerate(maxima):
                if value > 0:
                    bar = (h - 14) * value / peak
                    p.drawRect(QRectF(i * width, h - 4 - bar, max(width, 1), bar))
            for frame, status in self.marks:
                if status in STATUS_COLORS:
                    p.setPen(QPen(STATUS_COLORS[status], 1))
                    x = self._x(frame)
                    p.drawLine(int(x), 0, int(x), 7)
            p.setPen(QPen(QColor("#ffffff"), 2))
            x = self._x(self.state.frame + 0.5)
            p.drawLine(int(x), 0, int(x), h)
        p.end()

    def _seek(self, x: float):
        n = self.state.frame_count
        if n:
            self.state.set_frame(int(x / max(self.width(), 1) * n))

    def mousePressEvent(self, event):
        self._seek(event.position().x())

    def mouseMoveEvent(self, event):
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._seek(event.position().x())
