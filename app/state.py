"""The app's model: the open project and what the user is looking at, with signals widgets listen to.

Widgets never keep their own copy of labels or detections: they ask this object and redraw when it
signals (napari's components/_qt split). Every label edit goes through an undo command that writes to
the store at once, so a crash never loses an edit the user saw.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from bpr.config import default
from bpr.results.counts import CountSource
from bpr.data.store import Project

CONF_REST_MS = 200


class ProjectState(QObject):
    projectChanged = Signal()
    videoChanged = Signal(str)
    frameChanged = Signal(int)
    labelsChanged = Signal()          # boxes or frame statuses changed
    speciesChanged = Signal()         # a species added, renamed, merged or deleted
    detectionsChanged = Signal()      # new detections stored, or another run chosen
    confChanged = Signal(float)       # at once, for what is cheap to redraw (the current frame)
    confSettled = Signal(float)       # once the threshold has rested, for whole-video work
    runChanged = Signal(str)
    highlightChanged = Signal()       # the finder's chosen suggestion changed
    statusMessage = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project: Project | None = None
        self.video: dict | None = None
        self.frame = 0
        self.run: str | None = None
        self.conf = default(CountSource, "conf")
        self.undo = QUndoStack(self)
        self.highlight: tuple | None = None  # (video id, frame, (x1, y1, x2, y2)) the finder points at
        self._colors: dict[str, str] | None = None  # species_colors(), until the species may have changed
        # connected first, so that it runs before any widget redraws: an import, a species edit or a box
        # of a new species (add_box makes it) may each change them
        for signal in (self.projectChanged, self.speciesChanged, self.labelsChanged):
            signal.connect(self._forget_colors)
        self._sequences: list | None = None  # the project's ImageSequences, until the project changes
        self._sequence_of: dict = {}         # image id -> its ImageSequence
        # A slider drag sets the threshold many times a second; counting a whole video each time
        # froze the window (0.18 s a step over 100,000 detections), so that waits for a pause.
        self._conf_rest = QTimer(self, singleShot=True, interval=CONF_REST_MS)
        self._conf_rest.timeout.connect(lambda: self.confSettled.emit(self.conf))

    # -- opening ---------------------------------------------------------------------------------
    def open(self, folder: str | Path) -> None:
        project = Project.open(folder)
        if self.project is not None:
            self.project.close()
        self.project = project
        self.video, self.frame, self.run = None, 0, None
        self._sequences = None
        self.undo.clear()
        runs = [r.name for r in project.runs() if r.weights]
        self.run = runs[-1] if runs else None
        self.projectChanged.emit()
        video = self._first_readable_video() or next(iter(project.videos()), None)
        if video:
            self.set_video(video["id"])

    def files_checked(self, folder: Path, files: dict[str, list[str]]) -> None:
        """What :meth:`bpr.data.store.Project.check_files` found and recorded in the project in ``folder``,
        looked at off the GUI thread after :meth:`open`."""
        if self.project is None or self.project.folder != folder or not (files["gone"] or files["back"]):
            return  # another project was opened meanwhile, or nothing changed
        self.reload()
        if self.video and self.video["status"] != "ok":
            video = self._first_readable_video()  # else stay on this one: there is nothing better
            if video:
                self.set_video(video["id"])
        if files["gone"]:
            self.statusMessage.emit(f"{len(files['gone'])} file(s) are gone since the project was last open; "
                                    "right-click the list to find them in a folder")

    def _first_readable_video(self) -> dict | None:
        return next((v for v in self.project.videos() if v["status"] == "ok"), None)

    def reload(self) -> None:
        """Something outside the GUI thread changed the store (an import, a training run)."""
        vid = self.video["id"] if self.video else None
        self._sequences = None  # an import may have added images
        self.projectChanged.emit()
        if vid:
            self.set_video(vid, keep_frame=True)

    # -- navigation ------------------------------------------------------------------------------
    def set_video(self, video_id: str, keep_frame: bool = False) -> None:
        self.video = self.project.video(video_id)
        if not keep_frame:
            self.frame = 0
        self.frame = min(self.frame, max(0, (self.video["frame_count"] or 1) - 1))
        self.videoChanged.emit(video_id)
        self.frameChanged.emit(self.frame)

    def image_sequence(self):
        """The current image's folder as one image sequence (bpr.data.store.ImageSequence); None on a video.
        Looked up once per project change: stepping through an image set must not list its folders at
        every image."""
        if not self.video or self.video["kind"] != "image":
            return None
        self.image_sequences()
        return self._sequence_of.get(self.video["id"])

    def image_sequences(self) -> list:
        """Every image folder of the project, as image sequences; looked up once per project change."""
        if self._sequences is None:
            self._sequences = self.project.image_sequences()
            self._sequence_of = {vid: seq for seq in self._sequences for vid in seq.frames}
        return list(self._sequences)

    @property
    def frame_count(self) -> int:
        return (self.video or {}).get("frame_count") or 0

    def set_frame(self, index: int) -> None:
        if not self.video:
            return
        index = max(0, min(int(index), self.frame_count - 1))
        if index != self.frame:
            self.frame = index
            self.frameChanged.emit(index)

    def step(self, delta: int) -> None:
        self.set_frame(self.frame + delta)

    def labeled_frames(self) -> list[dict]:
        return self.project.labeled_frames(self.video["id"]) if self.video else []

    def jump_labeled(self, direction: int) -> None:
        """Next (+1) or previous (-1) labeled frame."""
        frames = [f["frame_index"] for f in self.labeled_frames()]
        targets = [f for f in frames if (f > self.frame if direction > 0 else f < self.frame)]
        if targets:
            self.set_frame(min(targets) if direction > 0 else max(targets))

    # -- what is on the current frame ------------------------------------------------------------
    def labels(self) -> list[dict]:
        return self.project.boxes(self.video["id"], self.frame) if self.video else []

    def frame_status(self) -> str:
        return self.project.frame_status(self.video["id"], self.frame) if self.video else "none"

    def detections(self) -> list[dict]:
        if not (self.video and self.run):
            return []
        return self.project.detections(self.run, self.video["id"], self.frame, self.conf)

    def pseudo_boxes(self) -> list[dict]:
        """The latest teacher's pseudo-boxes on this frame that are neither accepted nor rejected."""
        teacher = self.project.latest_pseudo_teacher() if self.video else None
        if teacher is None:
            return []
        return self.project.pseudo_boxes(teacher=teacher, video_id=self.video["id"], frame_index=self.frame,
                                         kind="pseudo")

    def set_highlight(self, video_id: str | None = None, frame: int = 0, box=None) -> None:
        """Point at a box (the finder's chosen suggestion): the frame view outlines it and zooms to it."""
        highlight = (video_id, frame, tuple(box)) if box is not None else None
        if highlight != self.highlight:
            self.highlight = highlight
            self.highlightChanged.emit()

    def set_run(self, run: str | None) -> None:
        if run != self.run:
            self.run = run
            self.runChanged.emit(run or "")
            self.detectionsChanged.emit()

    def set_conf(self, conf: float) -> None:
        if abs(conf - self.conf) > 1e-9:
            self.conf = conf
            self.confChanged.emit(conf)
            self._conf_rest.start()

    def species_colors(self) -> dict[str, str]:
        """Species name -> colour; asked of the store once until the species may have changed, not at
        every frame step by each widget that draws a species."""
        if self._colors is None:
            self._colors = {s["name"]: s["color"] for s in self.project.species()} if self.project else {}
        return self._colors

    def _forget_colors(self, *_) -> None:
        self._colors = None

    # -- edits (undoable; written to the store at once) ------------------------------------------
    def add_box(self, species: str, xyxy, source: str = "drawn") -> None:
        self.undo.push(_AddBox(self, self.video["id"], self.frame, species, tuple(xyxy), source))

    def move_box(self, box_id: int, xyxy) -> None:
        old = self._box(box_id)
        self.undo.push(_EditBox(self, box_id, "move box", (old["x1"], old["y1"], old["x2"], old["y2"]),
                                tuple(xyxy), old["species"], old["species"]))

    def relabel_box(self, box_id: int, species: str) -> None:
        old = self._box(box_id)
        xyxy = (old["x1"], old["y1"], old["x2"], old["y2"])
        self.undo.push(_EditBox(self, box_id, "relabel box", xyxy, xyxy, old["species"], species))

    def delete_box(self, box_id: int) -> None:
        self.undo.push(_DeleteBox(self, self._box(box_id)))

    def set_frame_status(self, status: str) -> None:
        self.undo.push(_FrameStatus(self, self.video["id"], self.frame, self.frame_status(), status))

    def _box(self, box_id: int) -> dict:
        return self.project.box(box_id)

    # -- the finder's suggestions (undoable too) --------------------------------------------------
    def accept_suggestion(self, suggestion) -> None:
        """A finder suggestion made a label: a detection's as a box drawn (undo deletes it), a pseudo-box's
        through its review (undo makes it pending again)."""
        from bpr.results.review import accept, reopen

        if suggestion.pseudo_id is None:
            self.add_box(suggestion.species, suggestion.box, source="accepted")
            return
        self.undo.push(_Review(self, f"accept pseudo {suggestion.species}", lambda p: accept(p, suggestion),
                               lambda p: reopen(p, suggestion)))

    def reject_suggestion(self, suggestion) -> None:
        from bpr.results.review import reject, reopen

        self.undo.push(_Review(self, f"reject {suggestion.species}", lambda p: reject(p, suggestion),
                               lambda p: reopen(p, suggestion)))

    # -- species (undoable too) ------------------------------------------------------------------
    def add_species(self, name: str) -> None:
        self.undo.push(_SpeciesEdit(self, f"add species {name}", lambda p: p.species_id(name),
                                    lambda p, _: p.delete_species(name)))

    def rename_species(self, name: str, new_name: str) -> None:
        new_name = " ".join(new_name.split())
        self.undo.push(_SpeciesEdit(self, f"rename {name} to {new_name}", lambda p: p.rename_species(name, new_name),
                                    lambda p, _: p.rename_species(new_name, name)))

    def merge_species(self, name: str, into: str) -> None:
        self.undo.push(_SpeciesEdit(self, f"merge {name} into {into}", lambda p: p.merge_species(name, into),
                                    lambda p, change: p.restore_species(change)))

    def delete_species(self, name: str) -> None:
        self.undo.push(_SpeciesEdit(self, f"delete species {name}", lambda p: p.delete_species(name),
                                    lambda p, change: p.restore_species(change)))


class _AddBox(QUndoCommand):
    def __init__(self, state, video, frame, species, xyxy, source):
        super().__init__(f"add {species}")
        self.state, self.args = state, (video, frame, species, xyxy, source)
        self.box_id = None

    def redo(self):
        video, frame, species, xyxy, source = self.args
        self.box_id = self.state.project.add_box(video, frame, species, xyxy, source=source)
        self.state.labelsChanged.emit()

    def undo(self):
        self.state.project.delete_box(self.box_id)
        self.state.labelsChanged.emit()


class _EditBox(QUndoCommand):
    def __init__(self, state, box_id, text, old_xyxy, new_xyxy, old_species, new_species):
        super().__init__(text)
        self.state, self.box_id = state, box_id
        self.old, self.new = (old_xyxy, old_species), (new_xyxy, new_species)

    def _apply(self, xyxy, species):
        self.state.project.update_box(self.box_id, xyxy=xyxy, species=species)
        self.state.labelsChanged.emit()

    def redo(self):
        self._apply(*self.new)

    def undo(self):
        self._apply(*self.old)


class _DeleteBox(QUndoCommand):
    def __init__(self, state, box: dict):
        super().__init__(f"delete {box['species']}")
        self.state, self.box = state, box

    def redo(self):
        self.deleted = self.state.project.delete_box(self.box["id"])
        self.state.labelsChanged.emit()

    def undo(self):
        self.state.project.restore_box(self.deleted)  # with its id, its times and its pseudo-box's link
        self.state.labelsChanged.emit()


class _SpeciesEdit(QUndoCommand):
    """A species added, renamed, merged or deleted: ``do(project)`` returns what ``undo(project, it)`` needs."""

    def __init__(self, state, text, do, undo):
        super().__init__(text)
        self.state, self._do, self._undo, self.change = state, do, undo, None

    def _changed(self):
        self.state.speciesChanged.emit()
        self.state.labelsChanged.emit()
        self.state.detectionsChanged.emit()

    def redo(self):
        self.change = self._do(self.state.project)
        self._changed()

    def undo(self):
        self._undo(self.state.project, self.change)
        self._changed()


class _Review(QUndoCommand):
    """A finder suggestion accepted or rejected, and back."""

    def __init__(self, state, text, do, undo):
        super().__init__(text)
        self.state, self._do, self._undo = state, do, undo

    def redo(self):
        self._do(self.state.project)
        self.state.labelsChanged.emit()

    def undo(self):
        self._undo(self.state.project)
        self.state.labelsChanged.emit()


class _FrameStatus(QUndoCommand):
    def __init__(self, state, video, frame, old, new):
        super().__init__(f"mark frame {new}")
        self.state, self.where, self.old, self.new = state, (video, frame), old, new

    def _apply(self, status):
        self.state.project.set_frame_status(*self.where, status)
        self.state.labelsChanged.emit()

    def redo(self):
        self._apply(self.new)

    def undo(self):
        self._apply(self.old)
