"""The timeline: counts per frame stacked by species in their colours (DIVE's detection histogram), a
frame ruler, marks on labeled frames, the current frame; click to seek.

On an image it spans the image's folder, one image sequence as DIVE shows it: a bar per image in the
folder's order, and a click opens that image.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.state import ProjectState
from app.text import tip
from bpr.results.counts import shown_per_frame

STATUS_COLORS = {"partial": QColor("#f0a030"), "full": QColor("#40c070")}


MARKS_PX, RULER_PX = 7, 14  # the labeled-frame marks above the bars, the ruler below them
TICK_STEPS = (1, 2, 5)      # ruler ticks every 1, 2 or 5 times a power of ten frames, at least TICK_PX apart
TICK_PX = 70


def tick_step(length: int, width: int) -> int:
    """Frames between the ruler's labeled ticks: the smallest 1, 2 or 5 x 10^k leaving TICK_PX between them."""
    scale = 1
    while True:
        for step in TICK_STEPS:
            if step * scale * width / max(length, 1) >= TICK_PX:
                return step * scale
        scale *= 10


class Timeline(QWidget):
    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.counts = np.zeros((0, 0))      # frame (or image) x species
        self.species: list[str] = []
        self._picture: QPixmap | None = None  # the bars, marks and ruler drawn: a frame step reuses them
        self.marks: list[tuple[int, str]] = []
        self.images: list[str] = []         # on an image: its folder's images, in order; else empty
        self.places: dict[str, int] = {}    # image id -> its place in ``images``
        self.setMinimumHeight(64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(tip("Counts per frame, or per image of an image's folder, stacked by species in their "
                            "colours (detections at the confidence threshold, else labels); orange marks: partial "
                            "frames, green: full frames; white: where you are. Click or drag to seek."))
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
        self.marks = []
        if not s.video or not n:
            self._set_counts({}, 0, lambda key: None)
            return
        shown = shown_per_frame(s.project, [s.video["id"]], s.run, s.conf)
        self.marks = [(f["frame_index"], f["label_status"]) for f in s.labeled_frames()]
        self._set_counts(shown, n, lambda key: key[1] if 0 <= key[1] < n else None)

    def _load_images(self):
        """Counts and label marks of the folder's images."""
        s = self.state
        shown = shown_per_frame(s.project, self.images, s.run, s.conf)
        self.marks = [(self.places[vid], status) for vid, _, status in s.project.label_statuses(self.images)]
        self._set_counts(shown, len(self.images), lambda key: self.places.get(key[0]))

    def _set_counts(self, shown: dict, n: int, place) -> None:
        """``shown``: {(video, frame): {species: count}} as a place x species array."""
        self.species = sorted({name for counts in shown.values() for name in counts})
        column = {name: i for i, name in enumerate(self.species)}
        self.counts = np.zeros((n, len(self.species)))
        for key, counts in shown.items():
            at = place(key)
            if at is not None:
                for name, count in counts.items():
                    self.counts[at, column[name]] = count
        self._picture = None
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

    @property
    def totals(self) -> np.ndarray:
        """Animals per frame (or image), all species."""
        return self.counts.sum(axis=1)

    def _binned(self) -> np.ndarray:
        """One stack of species counts a pixel column: in each, the frame with the most animals (a peak
        of one frame is not averaged away)."""
        n = len(self.counts)
        edges = np.linspace(0, n, min(n, max(self.width(), 1)) + 1).astype(int)
        totals = self.totals
        peaks = [a + int(totals[a:b].argmax()) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        return self.counts[peaks] if peaks else np.zeros((0, len(self.species)))

    def paintEvent(self, event):
        p = QPainter(self)
        n = self._length()
        if self._picture is None or self._picture.size() != self.size():
            self._picture = self._draw_static(n)  # a frame step repaints the marker over it, nothing more
        p.drawPixmap(0, 0, self._picture)
        if n:
            p.setPen(QPen(QColor("#ffffff"), 2))
            x = self._x(self._position() + 0.5)
            p.drawLine(int(x), 0, int(x), self.height())
        p.end()

    def _draw_static(self, n: int) -> QPixmap:
        """The bars, the labeled-frame marks and the ruler: all but where you are."""
        picture = QPixmap(self.size())
        picture.fill(QColor("#1b2026"))
        if not n:
            return picture
        p = QPainter(picture)
        h, w = self.height(), self.width()
        bars = self._binned()
        peak = max(bars.sum(axis=1).max(initial=0), 1)
        colors = self.state.species_colors()
        bottom, room = h - RULER_PX, h - RULER_PX - MARKS_PX - 2
        width = w / max(len(bars), 1)
        p.setPen(Qt.PenStyle.NoPen)
        for column, name in enumerate(self.species):
            p.setBrush(QColor(colors.get(name, "#4a90c8")))
            below = bars[:, :column].sum(axis=1)
            for i in np.flatnonzero(bars[:, column]):
                top = bottom - room * (below[i] + bars[i, column]) / peak
                p.drawRect(QRectF(i * width, top, max(width, 1), room * bars[i, column] / peak))
        for frame, status in self.marks:
            if status in STATUS_COLORS:
                p.setPen(QPen(STATUS_COLORS[status], 1))
                x = self._x(frame)
                p.drawLine(int(x), 0, int(x), MARKS_PX)
        self._ruler(p, n, bottom)
        p.end()
        return picture

    def _ruler(self, p: QPainter, n: int, top: int) -> None:
        """Ticks and numbers: frames of a video, 1-based places of an image folder (as DIVE numbers them)."""
        p.setPen(QPen(QColor("#6c7680"), 1))
        p.drawLine(0, top, self.width(), top)
        step = tick_step(n, self.width())
        first = 1 if self.images else 0
        for value in range(0, n + first, step):
            if value < first:
                continue
            x = self._x(value - first + 0.5)
            p.drawLine(int(x), top, int(x), top + 3)
            p.drawText(int(x) + 2, self.height() - 2, str(value))

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
