"""The frame view: the current frame with labels (solid), detections (dashed) and a self-training round's
pseudo-boxes (dotted), zoom, pan, drawing."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from app.state import ProjectState
from bpr.data.media import VideoError, VideoReader


class FrameSource:
    """Decoded frames of the current video, with the reader's LRU cache (view-side only)."""

    def __init__(self, cache_mb: float = 512):
        self.cache_mb = cache_mb
        self.reader: VideoReader | None = None
        self.video_id: str | None = None

    def frame(self, state: ProjectState) -> np.ndarray | None:
        video = state.video
        if not video or video["status"] != "ok" or not video["path"]:
            return None
        if self.video_id != video["id"]:
            self.close()
            self.reader = VideoReader(state.project.resolve_path(video["path"]), cache_mb=self.cache_mb)
            self.video_id = video["id"]
        return self.reader.read(state.frame)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader, self.video_id = None, None


def confidence_text(conf: float) -> str:
    """Two decimals, or enough to tell a weak model's small confidences apart."""
    return f"{conf:.2f}" if conf >= 0.01 else f"{conf:.4f}"


def to_pixmap(bgr: np.ndarray, brightness: int = 0, contrast: float = 1.0) -> QPixmap:
    """A BGR frame as a pixmap, with optional brightness/contrast (view only, never stored)."""
    if brightness or contrast != 1.0:
        bgr = cv2.convertScaleAbs(bgr, alpha=contrast, beta=brightness)
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class BoxItem(QGraphicsRectItem):
    """A label box: select, drag to move, drag its bottom-right corner to resize."""

    HANDLE = 10  # pixels on screen

    def __init__(self, view: FrameView, box: dict, color: QColor):
        x1, y1, x2, y2 = box["x1"], box["y1"], box["x2"], box["y2"]
        super().__init__(QRectF(0, 0, x2 - x1, y2 - y1))
        self.view, self.box = view, box
        self.setPos(x1, y1)
        pen = QPen(color, 2)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable
                      | QGraphicsItem.GraphicsItemFlag.ItemIsMovable)
        self.setAcceptHoverEvents(True)
        self._resizing = False

    def _near_corner(self, pos: QPointF) -> bool:
        handle = self.HANDLE / max(self.view.transform().m11(), 1e-6)
        r = self.rect()
        return abs(pos.x() - r.right()) < handle and abs(pos.y() - r.bottom()) < handle

    def hoverMoveEvent(self, event):
        shape = Qt.CursorShape.SizeFDiagCursor if self._near_corner(event.pos()) else Qt.CursorShape.SizeAllCursor
        self.setCursor(shape)

    def mousePressEvent(self, event):
        self._resizing = self._near_corner(event.pos())
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._resizing:
            r = self.rect()
            self.setRect(QRectF(r.topLeft(), QPointF(max(event.pos().x(), r.left() + 2),
                                                     max(event.pos().y(), r.top() + 2))))
        else:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        super().mouseReleaseEvent(event)
        self._resizing = False
        rect = self.mapRectToScene(self.rect())
        new = (rect.left(), rect.top(), rect.right(), rect.bottom())
        old = (self.box["x1"], self.box["y1"], self.box["x2"], self.box["y2"])
        if max(abs(a - b) for a, b in zip(new, old)) > 0.5:
            self.view.state.move_box(self.box["id"], self.view.clip(new))


HIGHLIGHT = "#ffe14d"   # the finder's chosen suggestion
ZOOM_CONTEXT = 4        # zoomed to a suggestion, the view shows this many times its size
ZOOM_MIN_PX = 160       # ... and never less than this many frame pixels


class FrameView(QGraphicsView):
    """Shows the state's current frame; listens to the state and redraws."""

    boxSelected = Signal(object)   # the selected label dict, or None
    boxDrawn = Signal()            # a box was drawn (drawing mode ends)

    def __init__(self, state: ProjectState, parent=None):
        super().__init__(parent)
        self.state = state
        self.source = FrameSource()
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QBrush(QColor("#101418")))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.pixmap_item = QGraphicsPixmapItem()
        self.scene().addItem(self.pixmap_item)
        self.show_text = True
        self.brightness, self.contrast = 0, 1.0
        self.draw_species: str | None = None   # when set, dragging on the frame draws a new box
        self._draw_start: QPointF | None = None
        self._rubber: QGraphicsRectItem | None = None
        self._needs_fit = True   # fit when the next frame is shown (a new video)
        self._fit_mode = True    # keep fitting on resize, until the user zooms
        self.error: str | None = None
        self.scene().selectionChanged.connect(self._selection_changed)
        state.frameChanged.connect(self.refresh)
        state.labelsChanged.connect(self.refresh_boxes)
        state.detectionsChanged.connect(self.refresh_boxes)
        state.confChanged.connect(self.refresh_boxes)
        state.videoChanged.connect(self._video_changed)
        state.projectChanged.connect(self.source.close)
        state.highlightChanged.connect(self._show_highlight)

    # -- drawing the frame -----------------------------------------------------------------------
    def _video_changed(self, _):
        self._needs_fit = True

    def refresh(self, *_):
        try:
            frame = self.source.frame(self.state)
            self.error = None
        except (VideoError, IndexError) as e:
            frame, self.error = None, str(e)
            self.state.statusMessage.emit(self.error)
        if frame is None:
            video = self.state.video or {}
            w, h = video.get("width") or 640, video.get("height") or 360
            pixmap = QPixmap(w, h)
            pixmap.fill(QColor("#202830"))
        else:
            pixmap = to_pixmap(frame, self.brightness, self.contrast)
        self.pixmap_item.setPixmap(pixmap)
        self.scene().setSceneRect(QRectF(pixmap.rect()))
        if self._needs_fit:
            self.fit()
        self.refresh_boxes()

    def refresh_boxes(self):
        for item in list(self.scene().items()):
            if item is not self.pixmap_item and item.parentItem() is None and item is not self._rubber:
                self.scene().removeItem(item)
        if not self.state.video:
            return
        colors = self.state.species_colors()
        for box in self.state.labels():
            item = BoxItem(self, box, QColor(colors.get(box["species"], "#ffffff")))
            self.scene().addItem(item)
            self._caption(item, box["species"])
        # what a model found, in the species' colour: detections dashed, a round's pseudo-boxes dotted
        found = [(det, "detection", det["confidence"], Qt.PenStyle.DashLine) for det in self.state.detections()]
        found += [(p, "pseudo", p["score"], Qt.PenStyle.DotLine) for p in self.state.pseudo_boxes()]
        for row, kind, score, style in found:
            x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
            item = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1))
            pen = QPen(QColor(colors.get(row["species"], "#ffffff")), 2, style)
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setData(0, kind)
            self.scene().addItem(item)
            prefix = "pseudo " if kind == "pseudo" else ""
            self._caption(item, f"{prefix}{row['species']} {confidence_text(score)}", at=QPointF(x1, y2))

        self._draw_highlight()

    def _highlighted(self):
        """The highlighted box, when it is on the frame shown."""
        h = self.state.highlight
        if h and self.state.video and (h[0], h[1]) == (self.state.video["id"], self.state.frame):
            return h[2]
        return None

    def _draw_highlight(self):
        box = self._highlighted()
        if box is None:
            return
        x1, y1, x2, y2 = box
        pad = max(3.0, 0.08 * max(x2 - x1, y2 - y1))
        item = QGraphicsRectItem(QRectF(x1 - pad, y1 - pad, x2 - x1 + 2 * pad, y2 - y1 + 2 * pad))
        pen = QPen(QColor(HIGHLIGHT), 3)
        pen.setCosmetic(True)
        item.setPen(pen)
        item.setData(0, "highlight")
        self.scene().addItem(item)

    def _show_highlight(self):
        """Outline the finder's chosen suggestion and zoom to it, with room around it to judge it."""
        self.refresh_boxes()
        box = self._highlighted()
        if box is None:
            return
        x1, y1, x2, y2 = box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        side = max(ZOOM_CONTEXT * max(x2 - x1, y2 - y1), ZOOM_MIN_PX)
        self.fitInView(QRectF(cx - side / 2, cy - side / 2, side, side), Qt.AspectRatioMode.KeepAspectRatio)
        self._fit_mode = False

    def _caption(self, parent: QGraphicsRectItem, text: str, at: QPointF | None = None):
        """Species (and confidence) in the box's colour on a dark backing, readable on any seafloor."""
        if not self.show_text:
            return
        backing = QGraphicsRectItem(parent)
        backing.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        backing.setPen(QPen(Qt.PenStyle.NoPen))
        backing.setBrush(QBrush(QColor(0, 0, 0, 170)))
        label = QGraphicsSimpleTextItem(text, backing)
        label.setBrush(QBrush(parent.pen().color().lighter(130)))
        backing.setRect(label.boundingRect().adjusted(-2, 0, 2, 0))
        scale = max(self.transform().m11(), 1e-6)
        backing.setPos(parent.mapFromScene(at) if at is not None
                       else parent.rect().topLeft() + QPointF(0, -label.boundingRect().height() / scale))

    def set_show_text(self, on: bool):
        self.show_text = on
        self.refresh_boxes()

    def set_enhancement(self, brightness: int, contrast: float):
        self.brightness, self.contrast = brightness, contrast
        self.refresh()

    # -- zoom and pan ----------------------------------------------------------------------------
    def fit(self):
        self.fitInView(self.pixmap_item, Qt.AspectRatioMode.KeepAspectRatio)
        self._needs_fit, self._fit_mode = False, True

    def zoom(self, factor: float):
        self.scale(factor, factor)
        self._fit_mode = False  # a zoomed view keeps its zoom when the window resizes

    def wheelEvent(self, event):
        self.zoom(1.15 ** (event.angleDelta().y() / 120))

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    # -- drawing new boxes -----------------------------------------------------------------------
    def set_draw_species(self, species: str | None):
        self.draw_species = species
        self.setDragMode(QGraphicsView.DragMode.NoDrag if species else QGraphicsView.DragMode.ScrollHandDrag)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if species else Qt.CursorShape.OpenHandCursor)

    def clip(self, xyxy):
        r = self.scene().sceneRect()
        x1, y1, x2, y2 = xyxy
        return (max(r.left(), x1), max(r.top(), y1), min(r.right(), x2), min(r.bottom(), y2))

    def mousePressEvent(self, event):
        if self.draw_species and event.button() == Qt.MouseButton.LeftButton:
            self._draw_start = self.mapToScene(event.position().toPoint())
            self._rubber = QGraphicsRectItem(QRectF(self._draw_start, self._draw_start))
            pen = QPen(QColor("#ffffff"), 1, Qt.PenStyle.DotLine)
            pen.setCosmetic(True)
            self._rubber.setPen(pen)
            self.scene().addItem(self._rubber)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._rubber is not None:
            self._rubber.setRect(QRectF(self._draw_start, self.mapToScene(event.position().toPoint())).normalized())
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._rubber is not None:
            rect = self._rubber.rect()
            self.scene().removeItem(self._rubber)
            self._rubber = None
            if rect.width() > 3 and rect.height() > 3:
                self.state.add_box(self.draw_species,
                                   self.clip((rect.left(), rect.top(), rect.right(), rect.bottom())))
                self.boxDrawn.emit()
            return
        super().mouseReleaseEvent(event)

    # -- selection and keys ----------------------------------------------------------------------
    def selected_box(self) -> dict | None:
        items = [i for i in self.scene().selectedItems() if isinstance(i, BoxItem)]
        return items[0].box if items else None

    def _selection_changed(self):
        self.boxSelected.emit(self.selected_box())

    def keyPressEvent(self, event):
        box = self.selected_box()
        if box and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.state.delete_box(box["id"])
            return
        event.ignore()  # frame stepping etc. are the window's shortcuts
