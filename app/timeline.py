"""The timeline: a per-frame count strip, marks on labeled frames, the current frame; click to seek.

On an image it spans the image's folder, one image sequence as DIVE shows it: a bar per image in the
folder's order, and a click opens that image.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.state import ProjectState
from app.text import tip
from bpr.results.counts import shown_per_frame

STATUS_COLORS = {"partial": QColor("#f0a030"), "full": QColor("#40c070")}


class Timeline(QWidget):
    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.counts = np.zeros(0)
        self.marks: list[tuple[int, str]] = []
        self.images: list[str] = []         # on an image: its folder's images, in order; else empty
        self.places: dict[str, int] = {}    # image id -> its place in ``images``
        self.setMinimumHeight(46)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(tip("Counts per frame, or per image of an image's folder (detections at the confidence "
                        "threshold, else labels); orange marks: partial frames, green: full frames. Click or "
                        "drag to seek."))
        state.videoChanged.connect(self._video_changed)
        state.labelsChanged.connect(self.reload)
        state.detectionsChanged.connect(self.reload)
        state.confSettled.connect(self.reload)
        state.frameChanged.connect(self.update)

    def _video_changed(self, video_id: str):
        if video_id not in self.places:  # another image of the same folder only moves the marker
            self.reload()
        self.update()

    def reload(self, *_):
        s = self.state
        sequence = s.image_sequence()
        self.images = [image["id"] for image in sequence.images] if sequence else []
        self.places = {vid: i for i, vid in enumerate(self.images)}
        if sequence:
            self._load_images()
            return
        n = s.frame_count
        self.counts = np.zeros(n)
        self.marks = []
        if not s.video or not n:
            self.update()
            return
        shown = shown_per_frame(s.project, [s.video["id"]], s.run, s.conf)
        for (_, frame), counts in shown.items():
            if 0 <= frame < n:
                self.counts[frame] = sum(counts.values())
        self.marks = [(f["frame_index"], f["label_status"]) for f in s.labeled_frames()]
        self.update()

    def _load_images(self):
        """Counts and label marks of the folder's images."""
        s = self.state
        shown = shown_per_frame(s.project, self.images, s.run, s.conf)
        self.counts = np.zeros(len(self.images))
        for (vid, _), counts in shown.items():
            self.counts[self.places[vid]] = sum(counts.values())
        self.marks = [(self.places[vid], status) for vid, _, status in s.project.label_statuses(self.images)]
        self.update()

    def _length(self) -> int:
        return len(self.images) or self.state.frame_count

    def _position(self) -> int:
        if self.images:
            return self.places.get(self.state.video["id"], 0)
        return self.state.frame

    def _x(self, frame: float) -> float:
        n = max(self._length(), 1)
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
            x = self._x(self._position() + 0.5)
            p.drawLine(int(x), 0, int(x), h)
        p.end()

    def _seek(self, x: float):
        n = self._length()
        if not n:
            return
        place = max(0, min(int(x / max(self.width(), 1) * n), n - 1))
        if not self.images:
            self.state.set_frame(place)
        elif self.images[place] != self.state.video["id"]:
            self.state.set_video(self.images[place])

    def mousePressEvent(self, event):
        self._seek(event.position().x())

    def mouseMoveEvent(self, event):
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._seek(event.position().x())
