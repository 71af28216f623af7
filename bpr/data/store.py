"""The project store: one SQLite file per project (WAL), schema migrations, transactional writes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import sqlite_utils

DB_NAME = "project.sqlite"

SPLITS = ("train", "val", "test", "none")
LABEL_STATUSES = ("partial", "full", "none")
VIDEO_STATUSES = ("ok", "missing", "unreadable")
BOX_SOURCES = ("imported", "drawn", "accepted")
LINK_HINT = "find the files with `bpr link-videos PROJECT FOLDER`"  # for messages about missing files

# Each entry upgrades the schema by one version (PRAGMA user_version). Never edit a released entry:
# append a new one, so that projects made by older versions open and upgrade in place.
MIGRATIONS: list[str] = [
    # 1: the data model (its tables are described in docs/architecture.md)
    """
    CREATE TABLE videos (
        id TEXT PRIMARY KEY,                  -- the dataset's own id (DUSIA: 20 digits)
        kind TEXT NOT NULL DEFAULT 'video' CHECK (kind IN ('video', 'image')),
        path TEXT,                            -- relative to the project folder where possible
        fps REAL,
        frame_count INTEGER,
        width INTEGER,
        height INTEGER,
        split TEXT NOT NULL DEFAULT 'none' CHECK (split IN ('train', 'val', 'test', 'none')),
        status TEXT NOT NULL DEFAULT 'missing' CHECK (status IN ('ok', 'missing', 'unreadable')),
        status_reason TEXT,
        source TEXT                           -- the annotation file it was imported from
    );
    CREATE INDEX videos_split ON videos(split);

    CREATE TABLE species (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        color TEXT NOT NULL,
        in_training INTEGER NOT NULL DEFAULT 1
    );

    CREATE TABLE frames (
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        frame_index INTEGER NOT NULL CHECK (frame_index >= 0),
        label_status TEXT NOT NULL CHECK (label_status IN ('partial', 'full', 'none')),
        PRIMARY KEY (video_id, frame_index)
    ) WITHOUT ROWID;
    CREATE INDEX frames_status ON frames(label_status, video_id);

    CREATE TABLE boxes (
        id INTEGER PRIMARY KEY,
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        frame_index INTEGER NOT NULL CHECK (frame_index >= 0),
        species_id INTEGER NOT NULL REFERENCES species(id),
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        track_id INTEGER,
        source TEXT NOT NULL CHECK (source IN ('imported', 'drawn', 'accepted')),
        origin_key TEXT,                      -- identifies an imported box, so re-imports add nothing twice
        created REAL NOT NULL,
        edited REAL,
        CHECK (x2 > x1 AND y2 > y1)
    );
    CREATE INDEX boxes_frame ON boxes(video_id, frame_index);
    CREATE INDEX boxes_species ON boxes(species_id);
    CREATE UNIQUE INDEX boxes_origin ON boxes(video_id, frame_index, origin_key)
        WHERE origin_key IS NOT NULL;

    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        config TEXT NOT NULL,                 -- JSON
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'running', 'finished', 'failed', 'cancelled')),
        error TEXT,
        started REAL,
        finished REAL,
        metrics TEXT,                         -- JSON: one object per epoch
        summary TEXT,                         -- JSON: the final evaluation of the best weights
        weights TEXT
    );

    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        frame_index INTEGER NOT NULL,
        species_id INTEGER NOT NULL REFERENCES species(id),
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        confidence REAL NOT NULL
    );
    CREATE INDEX detections_frame ON detections(run_id, video_id, frame_index);
    CREATE INDEX detections_species ON detections(run_id, species_id);
    """,
    # 2: which frames a detection run has processed. Counts need the frames where nothing was found
    # (a mean count over frames with detections only would be biased up), and detection resumes
    # from them.
    """
    CREATE TABLE detected_frames (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        frame_index INTEGER NOT NULL,
        PRIMARY KEY (run_id, video_id, frame_index)
    ) WITHOUT ROWID;
    -- Counting reads only these columns: a covering index turns it into one ordered index scan
    -- (it halved the 1M-detection summary of benchmarks/bench_counts.py). It also serves per-frame
    -- lookups.
    CREATE INDEX detections_count ON detections(run_id, video_id, frame_index, species_id, confidence);
    DROP INDEX detections_frame;
    """,
    # 3: suggestions of the missing-label finder that the user rejected (so they stay hidden)
    """
    CREATE TABLE rejected_detections (
        detection_id INTEGER PRIMARY KEY REFERENCES detections(id) ON DELETE CASCADE,
        rejected REAL NOT NULL
    );
    """,
    # 4: the process training a run (JSON: host, pid, process start time), so that a run whose
    # process died without a word (killed, power cut) reads as interrupted, and can be resumed
    """
    ALTER TABLE runs ADD COLUMN owner TEXT;
    """,
    # 5: what a teacher run's detections on partially labeled training frames give its student
    # (bpr.learn.pseudo): pseudo-boxes, trained on as animals, and ignore regions. Never labels: a
    # user accepts one into a label (label_id) or rejects it, and a rejected one is never used again.
    """
    CREATE TABLE pseudo_boxes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,  -- the teacher
        round INTEGER NOT NULL,               -- the self-training round that trains on it
        first_round INTEGER NOT NULL,         -- the round that first mined it (it persisted since)
        kind TEXT NOT NULL CHECK (kind IN ('pseudo', 'ignore')),
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        frame_index INTEGER NOT NULL,
        species_id INTEGER NOT NULL REFERENCES species(id),
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
        score REAL NOT NULL,                  -- the teacher's confidence
        review TEXT NOT NULL DEFAULT 'pending' CHECK (review IN ('pending', 'accepted', 'rejected')),
        label_id INTEGER REFERENCES boxes(id) ON DELETE SET NULL,
        CHECK (x2 > x1 AND y2 > y1)
    );
    CREATE INDEX pseudo_boxes_teacher ON pseudo_boxes(run_id, video_id, frame_index);
    CREATE INDEX pseudo_boxes_frame ON pseudo_boxes(video_id, frame_index);
    """,
    # 6: each import, and what it left out (JSON list of messages), so `bpr info` can say so later
    """
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        format TEXT NOT NULL,
        source TEXT NOT NULL,
        boxes_added INTEGER NOT NULL,
        left_out TEXT NOT NULL DEFAULT '[]'
    );
    """,
]
PSEUDO_KINDS = ("pseudo", "ignore")
LEARNED_MAP50 = 0.01  # a run has learned once its val mAP50 reaches 1 point; below, it finds noise
SCHEMA_VERSION = len(MIGRATIONS)

# Distinct, readable on dark water; species beyond the list get a colour from their hash.
PALETTE = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#aaffc3", "#ffd8b1",
]


class ProjectError(Exception):
    """A project cannot be opened or used (missing, made by a newer version, not a project)."""


SPECIES_TABLES = ("boxes", "detections", "pseudo_boxes")  # what has a species


@dataclasses.dataclass
class SpeciesChange:
    """What a merge or a delete of a species changed, for Project.restore_species to undo."""

    species: dict                                      # its row
    moved: dict[str, list[int]] | None = None          # merge: table -> ids moved to the other species
    deleted: dict[str, list[tuple]] | None = None      # delete: table -> rows deleted
    columns: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    rejected: list[tuple] = dataclasses.field(default_factory=list)  # rejected_detections rows deleted
    # delete: (pseudo-box id, label id) of other species' accepted pseudo-boxes whose label was deleted
    links: list[tuple[int, int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DeletedBox:
    """A deleted label, for Project.restore_box to put back as it was."""

    row: dict                        # its row: id, times and all
    accepted_from: list[int]         # the pseudo-box whose accept made it, if one did


class NotFoundError(ProjectError):
    """No video, run or other item of that name in the project."""


@dataclass
class ImageSequence:
    """A folder of the project's images, which DIVE opens as one image sequence (a video of stills)."""

    name: str                    # the folder as the images' ids name it ("train/images"), unique
    images: list[dict]           # the project's images in it, in frame order
    frames: dict[str, int]       # image id -> frame number: its file's place in the folder, natural order


class Project:
    """An open project: a folder holding ``project.sqlite`` and derived data (frame cache, runs).

    One instance per thread: SQLite connections must not be shared between threads. Writes go through
    :meth:`transaction`, so a failure (or a kill) leaves the store as it was before the write began.
    """

    def __init__(self, folder: Path, db: sqlite_utils.Database):
        self.folder = folder
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self._depth = 0

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike, create: bool = False) -> Project:
        folder = Path(folder).expanduser().absolute()
        db_path = folder / DB_NAME
        if not db_path.exists():
            if not create:
                raise ProjectError(f"{folder} is not a project: it has no {DB_NAME}")
            if folder.exists() and not folder.is_dir():
                raise ProjectError(f"{folder} exists and is not a folder")
            folder.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA foreign_keys = ON")
            db = sqlite_utils.Database(conn)
            if db.journal_mode != "wal":
                db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
            project = cls(folder, db)
            project._migrate()
        except sqlite3.DatabaseError as e:
            raise ProjectError(f"{db_path} cannot be opened as a project: {e}") from e
        return project

    @classmethod
    def create(cls, folder: str | os.PathLike) -> Project:
        return cls.open(folder, create=True)

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{self.folder} was written by a newer version of bpr (schema {version}; "
                f"this version knows {SCHEMA_VERSION}): update bpr to open it"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in _split_sql(MIGRATIONS[target - 1]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        self.conn.close()

    def copy_store(self, folder: str | os.PathLike) -> Path:
        """A consistent copy of this project's store (with what its write-ahead log holds) in ``folder``,
        which then opens as a project of the same videos, labels and runs; nothing else of the project
        (its runs' files, its frame cache) is copied, so the paths it keeps relative to this folder (the
        videos and weights inside it) point back here. For a measurement that changes the copy."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(folder / DB_NAME)
        try:
            self.conn.backup(target)
            for table, column in (("videos", "path"), ("runs", "weights")):
                rows = target.execute(f"SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
                target.executemany(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                                   [(str(self.resolve_path(path)), rowid) for rowid, path in rows])
            target.commit()
        finally:
            target.close()
        return folder

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block of writes atomically; nested blocks join the outermost one."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.conn.execute("COMMIT")

    # -- paths -------------------------------------------------------------------------------
    def stored_path(self, path: str | os.PathLike) -> str:
        """The form a file path is stored in: relative to the project folder when inside it."""
        path = Path(path).expanduser().absolute()
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)

    def resolve_path(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.folder / path

    @property
    def cache_dir(self) -> Path:
        return self.folder / "cache"

    # -- species -----------------------------------------------------------------------------
    def species_id(self, name: str, color: str | None = None) -> int:
        """The id of a species by name (case-insensitive), adding it if new."""
        name = " ".join(name.split())
        if not name:
            raise ValueError("a species name cannot be empty")
        row = self.conn.execute("SELECT id FROM species WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        if color is None:
            count = self.conn.execute("SELECT count(*) FROM species").fetchone()[0]
            color = PALETTE[count % len(PALETTE)]
        with self.transaction():
            cur = self.conn.execute("INSERT INTO species (name, color) VALUES (?, ?)", (name, color))
        return cur.lastrowid

    def species(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM species ORDER BY id"))

    def _species_row(self, name: str) -> dict:
        rows = list(self.db.query("SELECT * FROM species WHERE name = ?", [" ".join(name.split())]))
        if not rows:
            raise NotFoundError(f"no species {name!r} in {self.folder}")
        return rows[0]

    def species_usage(self, name: str) -> dict[str, int]:
        """How many labels, detections and pseudo-boxes a species has: what renaming, merging or
        deleting it touches."""
        sid = self._species_row(name)["id"]
        count = "SELECT count(*) FROM {} WHERE species_id = ?"
        return {table: self.conn.execute(count.format(table), (sid,)).fetchone()[0] for table in SPECIES_TABLES}

    def rename_species(self, name: str, new_name: str) -> None:
        """Rename a species; its boxes, detections and pseudo-boxes follow. A name another species has
        is refused: that is a merge."""
        row, new_name = self._species_row(name), " ".join(new_name.split())
        if not new_name:
            raise ValueError("a species name cannot be empty")
        other = self.conn.execute("SELECT name FROM species WHERE name = ? AND id != ?",
                                  (new_name, row["id"])).fetchone()
        if other:
            raise ValueError(f"{other[0]!r} is another species: merge {name!r} into it instead")
        with self.transaction():
            self.conn.execute("UPDATE species SET name = ? WHERE id = ?", (new_name, row["id"]))

    def merge_species(self, name: str, into: str) -> SpeciesChange:
        """Move every box, detection and pseudo-box of ``name`` to ``into``, and remove ``name``.
        Returns what :meth:`restore_species` needs to undo it."""
        row, target = self._species_row(name), self._species_row(into)
        if row["id"] == target["id"]:
            raise ValueError(f"{name!r} and {into!r} are the same species")
        change = SpeciesChange(row, moved={})
        with self.transaction():
            for table in SPECIES_TABLES:
                change.moved[table] = [r[0] for r in self.conn.execute(
                    f"SELECT id FROM {table} WHERE species_id = ?", (row["id"],))]
                self.conn.execute(f"UPDATE {table} SET species_id = ? WHERE species_id = ?",
                                  (target["id"], row["id"]))
            self.conn.execute("DELETE FROM species WHERE id = ?", (row["id"],))
        return change

    def delete_species(self, name: str) -> SpeciesChange:
        """Delete a species with its boxes, detections and pseudo-boxes. Returns what
        :meth:`restore_species` needs to put them all back, with their ids."""
        row = self._species_row(name)
        change = SpeciesChange(row, deleted={})
        with self.transaction():
            change.rejected = self.conn.execute(
                "SELECT r.* FROM rejected_detections r JOIN detections d ON d.id = r.detection_id "
                "WHERE d.species_id = ?", (row["id"],)).fetchall()
            change.links = self.conn.execute(  # a label whose species was changed after its accept
                "SELECT p.id, p.label_id FROM pseudo_boxes p JOIN boxes b ON b.id = p.label_id "
                "WHERE b.species_id = ? AND p.species_id != ?", (row["id"], row["id"])).fetchall()
            for table in SPECIES_TABLES:
                cursor = self.conn.execute(f"SELECT * FROM {table} WHERE species_id = ?", (row["id"],))
                change.columns[table] = [c[0] for c in cursor.description]
                change.deleted[table] = cursor.fetchall()
            # pseudo-boxes first: they may point at the boxes (label_id), detections last
            for table in ("pseudo_boxes", "boxes", "detections"):
                self.conn.execute(f"DELETE FROM {table} WHERE species_id = ?", (row["id"],))
            self.conn.execute("DELETE FROM species WHERE id = ?", (row["id"],))
        return change

    def restore_species(self, change: SpeciesChange) -> None:
        """Undo a merge or a delete: the species again, with its id and colour, and its rows."""
        row = change.species
        with self.transaction():
            self.conn.execute("INSERT INTO species (id, name, color, in_training) VALUES (?, ?, ?, ?)",
                              (row["id"], row["name"], row["color"], row["in_training"]))
            for table, ids in (change.moved or {}).items():
                for start in range(0, len(ids), 10000):
                    chunk = ids[start:start + 10000]
                    marks = ",".join("?" * len(chunk))
                    self.conn.execute(f"UPDATE {table} SET species_id = ? WHERE id IN ({marks})", (row["id"], *chunk))
            for table in ("detections", "boxes", "pseudo_boxes"):  # what pseudo-boxes point at, first
                rows = (change.deleted or {}).get(table)
                if rows:
                    self._insert_rows(table, change.columns[table], rows)
            if change.rejected:
                self.conn.executemany("INSERT INTO rejected_detections VALUES (?, ?)", change.rejected)
            self.conn.executemany("UPDATE pseudo_boxes SET label_id = ? WHERE id = ?",
                                  [(label, pseudo) for pseudo, label in change.links])

    def _insert_rows(self, table: str, columns: list[str], rows: list) -> None:
        """Put deleted rows back as they were, their ids included (an undo)."""
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                              rows)

    # -- videos ------------------------------------------------------------------------------
    def videos(self, split: str | None = None) -> list[dict]:
        if split is None:
            return list(self.db.query("SELECT * FROM videos ORDER BY id"))
        return list(self.db.query("SELECT * FROM videos WHERE split = ? ORDER BY id", [split]))

    def video(self, video_id: str) -> dict:
        rows = list(self.db.query("SELECT * FROM videos WHERE id = ?", [video_id]))
        if not rows:
            raise NotFoundError(f"no video {video_id!r} in {self.folder}")
        return rows[0]

    def image_sequences(self, ids: Iterable[str] | None = None) -> list[ImageSequence]:
        """The images (of ``ids``, or all) grouped by folder into image sequences, as DIVE groups them.

        Images whose files are recorded group by their real folder, and each is numbered by its place
        among that folder's image files in natural order (``img2`` before ``img10``), as DIVE numbers
        them; images without a file group by their id's folder.
        """
        from bpr.data.media import folder_images

        wanted = None if ids is None else set(ids)
        groups: dict[tuple, list[dict]] = {}
        for image in self.db.query("SELECT * FROM videos WHERE kind = 'image' ORDER BY id"):
            if wanted is not None and image["id"] not in wanted:
                continue
            # os.path, not pathlib: this runs on every image of a project (0.6 s for 20,000 with pathlib)
            key = (os.path.dirname(os.path.join(self.folder, image["path"])), "") if image["path"] else \
                (None, posixpath.dirname(image["id"]))
            groups.setdefault(key, []).append(image)
        sequences, taken = [], set()
        for (folder, _), images in groups.items():
            names = {image["id"]: image_file_name(image) for image in images}
            order = {name: i for i, name in enumerate(folder_images(folder, names.values()))}
            frames = {vid: order[name] for vid, name in names.items()}
            images.sort(key=lambda image: frames[image["id"]])
            parent = PurePosixPath(images[0]["id"]).parent.as_posix()
            # two real folders whose images' ids name the same folder get two names
            name = unique_name(parent if parent != "." else "images", taken)
            sequences.append(ImageSequence(name, images, frames))
        return sequences

    def image_sequence(self, video: str) -> ImageSequence | None:
        """The image sequence named ``video``, or the one holding the image ``video``; None when ``video``
        is a video. NotFoundError when it is neither."""
        for sequence in self.image_sequences():
            if sequence.name == video or video in sequence.frames:
                return sequence
        if not self.conn.execute("SELECT 1 FROM videos WHERE id = ?", (video,)).fetchone():
            raise NotFoundError(f"no video, image or image folder {video!r} in {self.folder}")
        return None

    def resolve_scope(self, video: str | ImageSequence) -> tuple[list[str], ImageSequence | None]:
        """The video ids ``video`` covers, and its image sequence (None for a video). A video's id covers
        that video; an image folder's name, one of its images' ids, or an ImageSequence already looked
        up, the folder's images."""
        sequence = video if isinstance(video, ImageSequence) else self.image_sequence(video)
        return ([video], None) if sequence is None else (list(sequence.frames), sequence)

    def set_video_file(self, video_id: str, path: str | os.PathLike | None, info: dict | None,
                       status: str, reason: str | None = None) -> None:
        """Record where a video's file is and what probing it found (status ok/missing/unreadable)."""
        info = info or {}
        with self.transaction():
            self.conn.execute(
                """UPDATE videos SET path = ?, status = ?, status_reason = ?,
                       fps = coalesce(?, fps), frame_count = coalesce(?, frame_count),
                       width = coalesce(?, width), height = coalesce(?, height)
                   WHERE id = ?""",
                (None if path is None else self.stored_path(path), status, reason,
                 info.get("fps"), info.get("frame_count"), info.get("width"), info.get("height"),
                 video_id),
            )

    def check_files(self, cancel: Callable[[], bool] | None = None) -> dict[str, list[str]]:
        """Look again at the recorded files: mark 'missing' those gone since, and take back those that
        are at their recorded place again (a drive plugged back in; an unreadable video replaced by one
        that reads). Returns {"gone": ids, "back": ids}.

        Only existence is checked (see benchmarks/bench_import.py), except for videos: one that is back,
        or still recorded as unreadable, is probed again, and taken back only with the frame count its
        labels were made on. Once ``cancel()`` is true it stops looking, and records what it found until
        then.
        """
        gone, back = [], []
        rows = self.conn.execute(  # read whole: the loop may stop early, and then it writes
            "SELECT id, kind, path, status, frame_count FROM videos WHERE path IS NOT NULL").fetchall()
        for vid, kind, stored, status, frames in rows:
            if cancel is not None and cancel():
                break
            path = os.path.join(self.folder, stored)  # os.path: this runs on every image of a project
            exists = os.path.isfile(path)
            if status != "missing" and not exists:
                gone.append((f"{path}: no such file", vid))
            elif status == "missing" and exists and kind == "image":
                back.append((vid, path, {}, "ok", None))  # the importer read its size; decoding all is slow
            elif status != "ok" and exists and kind == "video":  # back, or unreadable and maybe re-encoded
                from bpr.data.media import probe_video_file  # OpenCV: imported only when a video needs it

                info, probed, reason, mismatch = probe_video_file({"id": vid, "frame_count": frames}, path)
                if mismatch:
                    continue  # another video, or re-encoded: link_videos says so, and keeps the labels' count
                if probed == "ok" or status == "missing":
                    back.append((vid, path, info, probed, reason))
        if gone or back:
            with self.transaction():
                self.conn.executemany("UPDATE videos SET status = 'missing', status_reason = ? WHERE id = ?", gone)
                for row in back:
                    self.set_video_file(*row)
        return {"gone": [vid for _, vid in gone], "back": [row[0] for row in back]}

    # -- frames and boxes --------------------------------------------------------------------
    def set_frame_status(self, video_id: str, frame_index: int, status: str) -> None:
        if status not in LABEL_STATUSES:
            raise ValueError(f"label status must be one of {LABEL_STATUSES}, not {status!r}")
        with self.transaction():
            self.conn.execute(
                "INSERT INTO frames (video_id, frame_index, label_status) VALUES (?, ?, ?) "
                "ON CONFLICT (video_id, frame_index) DO UPDATE SET label_status = excluded.label_status",
                (video_id, frame_index, status),
            )

    def frame_status(self, video_id: str, frame_index: int) -> str:
        row = self.conn.execute(
            "SELECT label_status FROM frames WHERE video_id = ? AND frame_index = ?",
            (video_id, frame_index),
        ).fetchone()
        return row[0] if row else "none"

    def labeled_frames(self, video_id: str) -> list[dict]:
        return list(self.db.query(
            "SELECT frame_index, label_status FROM frames WHERE video_id = ? ORDER BY frame_index",
            [video_id],
        ))

    def split_frames(self, split: str, statuses: tuple[str, ...]) -> list[tuple[str, int, str]]:
        """(video id, frame, label status) of a split's frames in these label statuses."""
        return self.conn.execute(
            "SELECT f.video_id, f.frame_index, f.label_status FROM frames f JOIN videos v ON v.id = f.video_id "
            "WHERE v.split = ? AND f.label_status IN (SELECT value FROM json_each(?)) "
            "ORDER BY f.video_id, f.frame_index", (split, json.dumps(list(statuses)))).fetchall()

    def readable_frames(self, split: str, statuses: tuple[str, ...]) -> tuple[list[tuple[dict, int]], int]:
        """(video row, frame) of a split's frames in these label statuses whose video or image file is
        there (as of the last check_files), and how many frames are left out for want of one."""
        videos = {v["id"]: v for v in self.videos(split)}
        rows = self.split_frames(split, statuses)
        frames = [(videos[vid], frame) for vid, frame, _ in rows if videos[vid]["status"] == "ok"]
        return frames, len(rows) - len(frames)

    def label_status_counts(self, video_id: str | None = None) -> dict[str, dict[str, int]]:
        """{video id: {label status: number of frames}}, of every video or of one."""
        where, params = ("WHERE video_id = ?", [video_id]) if video_id is not None else ("", [])
        counts: dict[str, dict[str, int]] = {}
        for vid, status, n in self.conn.execute(
                f"SELECT video_id, label_status, count(*) FROM frames {where} GROUP BY video_id, label_status",
                params):
            counts.setdefault(vid, {})[status] = n
        return counts

    def label_statuses(self, video_ids: list[str]) -> list[tuple[str, int, str]]:
        """(video id, frame, label status) of the labeled frames of these videos (or images)."""
        return self.conn.execute(
            "SELECT video_id, frame_index, label_status FROM frames WHERE video_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY video_id, frame_index", (json.dumps(list(video_ids)),)).fetchall()

    def box(self, box_id: int) -> dict:
        rows = list(self.db.query(
            "SELECT b.*, s.name AS species FROM boxes b JOIN species s ON s.id = b.species_id WHERE b.id = ?",
            [box_id]))
        if not rows:
            raise NotFoundError(f"no box {box_id}")
        return rows[0]

    def detections(self, run: str, video_id: str, frame_index: int, min_conf: float) -> list[dict]:
        """A run's detections on one frame at ``min_conf`` or above, the most confident first."""
        return list(self.db.query(
            "SELECT d.*, s.name AS species FROM detections d JOIN species s ON s.id = d.species_id "
            "JOIN runs r ON r.id = d.run_id WHERE r.name = ? AND d.video_id = ? AND d.frame_index = ? "
            "AND d.confidence >= ? ORDER BY d.confidence DESC", [run, video_id, frame_index, min_conf]))

    def boxes(self, video_id: str, frame_index: int) -> list[dict]:
        return list(self.db.query(
            "SELECT b.*, s.name AS species FROM boxes b JOIN species s ON s.id = b.species_id "
            "WHERE b.video_id = ? AND b.frame_index = ? ORDER BY b.id",
            [video_id, frame_index],
        ))

    def add_box(self, video_id: str, frame_index: int, species: str | int,
                xyxy: tuple[float, float, float, float], source: str = "drawn",
                track_id: int | None = None) -> int:
        x1, y1, x2, y2 = map(float, xyxy)
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"a box needs x2 > x1 and y2 > y1, got {xyxy}")
        with self.transaction():
            species_id = species if isinstance(species, int) else self.species_id(species)
            cur = self.conn.execute(
                "INSERT INTO boxes (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, "
                "source, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (video_id, frame_index, species_id, x1, y1, x2, y2, track_id, source, time.time()),
            )
        return cur.lastrowid

    def update_box(self, box_id: int, xyxy: tuple[float, float, float, float] | None = None,
                   species: str | int | None = None) -> None:
        with self.transaction():
            if xyxy is not None:
                x1, y1, x2, y2 = map(float, xyxy)
                if not (x2 > x1 and y2 > y1):
                    raise ValueError(f"a box needs x2 > x1 and y2 > y1, got {xyxy}")
                self.conn.execute(
                    "UPDATE boxes SET x1 = ?, y1 = ?, x2 = ?, y2 = ?, edited = ? WHERE id = ?",
                    (x1, y1, x2, y2, time.time(), box_id),
                )
            if species is not None:
                species_id = species if isinstance(species, int) else self.species_id(species)
                self.conn.execute("UPDATE boxes SET species_id = ?, edited = ? WHERE id = ?",
                                  (species_id, time.time(), box_id))

    def delete_box(self, box_id: int) -> DeletedBox | None:
        """Delete a label; returns what :meth:`restore_box` needs to undo it (None if there was none)."""
        with self.transaction():
            cursor = self.conn.execute("SELECT * FROM boxes WHERE id = ?", (box_id,))
            row = cursor.fetchone()
            if row is None:
                return None
            deleted = DeletedBox(dict(zip([c[0] for c in cursor.description], row)), [r[0] for r in self.conn.execute(
                "SELECT id FROM pseudo_boxes WHERE label_id = ?", (box_id,))])
            self.conn.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
        return deleted

    def restore_box(self, deleted: DeletedBox) -> None:
        """Undo a delete_box: the label again with its id and times, and the link from its pseudo-box."""
        with self.transaction():
            self._insert_rows("boxes", list(deleted.row), [list(deleted.row.values())])
            self.conn.executemany("UPDATE pseudo_boxes SET label_id = ? WHERE id = ?",
                                  [(deleted.row["id"], pseudo) for pseudo in deleted.accepted_from])

    # -- pseudo-boxes ------------------------------------------------------------------------
    def replace_pseudo_boxes(self, teacher: str, round: int, rows: Iterable[tuple]) -> int:
        """Store what a teacher run gave round ``round``, replacing what it gave before (a mining
        repeated after an interruption). rows: (kind, video id, frame, species id, x1, y1, x2, y2,
        score, first round). Returns how many were stored."""
        run_id = self.run_id(teacher)
        rows = [(run_id, round, *row) for row in rows]
        with self.transaction():
            self.conn.execute("DELETE FROM pseudo_boxes WHERE run_id = ? AND review = 'pending'", (run_id,))
            self.conn.executemany(
                "INSERT INTO pseudo_boxes (run_id, round, kind, video_id, frame_index, species_id, "
                "x1, y1, x2, y2, score, first_round) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def pseudo_boxes(self, teacher: str | None = None, video_id: str | None = None,
                     frame_index: int | None = None, kind: str | None = None,
                     review: tuple[str, ...] = ("pending",)) -> list[dict]:
        """Pseudo-boxes and ignore regions (of one teacher, video, frame or kind), in the given review
        states (default: those neither accepted nor rejected), with their species' name and their
        teacher's run name."""
        where, params = ["p.review IN (SELECT value FROM json_each(?))"], [json.dumps(list(review))]
        for column, value in (("r.name", teacher), ("p.video_id", video_id), ("p.frame_index", frame_index),
                              ("p.kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return list(self.db.query(
            "SELECT p.*, s.name AS species, r.name AS teacher FROM pseudo_boxes p "
            "JOIN species s ON s.id = p.species_id JOIN runs r ON r.id = p.run_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.video_id, p.frame_index, p.score DESC", params))

    def latest_pseudo_teacher(self) -> str | None:
        """The teacher whose findings were stored last (the round about to train, or trained last)."""
        row = self.conn.execute("SELECT r.name FROM pseudo_boxes p JOIN runs r ON r.id = p.run_id "
                                "ORDER BY p.id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def review_pseudo_box(self, pseudo_id: int, accept: bool) -> int | None:
        """Accept a pseudo-box into a label (returns the label's id) or reject it for good."""
        with self.transaction():
            row = self.conn.execute(
                "SELECT video_id, frame_index, species_id, x1, y1, x2, y2, review FROM pseudo_boxes "
                "WHERE id = ?", (pseudo_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no pseudo-box {pseudo_id}")
            video_id, frame, species_id, *box, review = row
            if review != "pending":
                raise ValueError(f"pseudo-box {pseudo_id} has been {review} already")
            label_id = self.add_box(video_id, frame, species_id, box, source="accepted") if accept else None
            self.conn.execute("UPDATE pseudo_boxes SET review = ?, label_id = ? WHERE id = ?",
                              ("accepted" if accept else "rejected", label_id, pseudo_id))
        return label_id

    def reopen_pseudo_box(self, pseudo_id: int) -> None:
        """Undo a review: the pseudo-box is pending again, and the label an accept made is deleted."""
        with self.transaction():
            row = self.conn.execute("SELECT label_id FROM pseudo_boxes WHERE id = ?", (pseudo_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no pseudo-box {pseudo_id}")
            if row[0] is not None:
                self.delete_box(row[0])
            self.conn.execute("UPDATE pseudo_boxes SET review = 'pending', label_id = NULL WHERE id = ?",
                              (pseudo_id,))

    # -- training runs -----------------------------------------------------------------------
    def create_run(self, name: str, config: dict) -> int:
        """A new run, ``running`` in this process."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (name, config, status, started, metrics, owner) "
                "VALUES (?, ?, 'running', ?, '[]', ?)", (name, json.dumps(config), time.time(), this_process()))
        return cur.lastrowid

    def update_run(self, name: str, **fields) -> None:
        """Set columns of a run; ``metrics`` (a list of per-epoch dicts) and ``config`` are stored as JSON."""
        allowed = {"status", "error", "finished", "metrics", "summary", "weights", "config", "started", "owner"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown run fields {sorted(unknown)}")
        for key in ("metrics", "summary", "config"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        if not fields:
            return
        with self.transaction():
            self.conn.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE name = ?",
                (*fields.values(), name))

    def runs(self) -> list[Run]:
        return [_decode_run(r) for r in self.db.query("SELECT * FROM runs ORDER BY id")]

    def run_id(self, name: str) -> int:
        """A run's id, without reading its record (settings and curves are JSON to decode)."""
        row = self.conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no run {name!r} in {self.folder}")
        return row[0]

    def run(self, name: str) -> Run:
        rows = list(self.db.query("SELECT * FROM runs WHERE name = ?", [name]))
        if not rows:
            raise NotFoundError(f"no run {name!r} in {self.folder}")
        return _decode_run(rows[0])

    # -- summary -----------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts for ``bpr info``: videos (images among them), boxes, boxes per species, labeled
        frames, per split."""
        q = self.conn.execute
        species = {name: n for name, n in q(
            "SELECT s.name, count(b.id) FROM species s LEFT JOIN boxes b ON b.species_id = s.id "
            "GROUP BY s.id ORDER BY s.name COLLATE NOCASE"
        )}
        frames = {status: 0 for status in ("partial", "full")}
        frames.update({s: n for s, n in q(
            "SELECT label_status, count(*) FROM frames WHERE label_status != 'none' GROUP BY 1")})
        splits = {}
        for split in ("train", "val", "test"):
            videos, images = q("SELECT count(*), count(*) FILTER (WHERE kind = 'image') FROM videos "
                               "WHERE split = ?", (split,)).fetchone()
            labeled = q(
                "SELECT count(*) FROM frames f JOIN videos v ON v.id = f.video_id "
                "WHERE v.split = ? AND f.label_status != 'none'", (split,)).fetchone()[0]
            boxes = q(
                "SELECT count(*) FROM boxes b JOIN frames f USING (video_id, frame_index) "
                "JOIN videos v ON v.id = b.video_id WHERE v.split = ? AND f.label_status != 'none'",
                (split,)).fetchone()[0]
            splits[split] = {"videos": videos, "images": images, "frames": labeled, "boxes": boxes}
        return {
            "project": str(self.folder),
            "videos": q("SELECT count(*) FROM videos").fetchone()[0],
            "images": q("SELECT count(*) FROM videos WHERE kind = 'image'").fetchone()[0],
            "boxes": q("SELECT count(*) FROM boxes").fetchone()[0],
            "species": species,
            "frames": frames,
            "splits": splits,
            "pseudo_boxes": {"pending": 0, "accepted": 0, "rejected": 0, **dict(q(
                "SELECT review, count(*) FROM pseudo_boxes WHERE kind = 'pseudo' GROUP BY 1").fetchall())},
            "ignore_regions": q("SELECT count(*) FROM pseudo_boxes WHERE kind = 'ignore' "
                                "AND review = 'pending'").fetchone()[0],
            "imports": q("SELECT count(*) FROM imports").fetchone()[0],
            "left_out": [  # what imports left out
                {"time": when, "format": fmt, "source": source, "left_out": json.loads(lines)}
                for when, fmt, source, lines in q(
                    "SELECT time, format, source, left_out FROM imports WHERE left_out != '[]' ORDER BY id")],
            "missing_videos": q("SELECT count(*) FROM videos WHERE status = 'missing'").fetchone()[0],
            "unreadable_videos": q(
                "SELECT count(*) FROM videos WHERE status = 'unreadable'").fetchone()[0],
        }


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... if taken; the result is added to ``taken``."""
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}-{n}"
    taken.add(unique)
    return unique


def safe_stem(video_id: str) -> str:
    """A video's id as a file name: its folders joined with "__"."""
    return video_id.replace("/", "__").replace("\\", "__").replace(":", "_")


def frame_file_name(video: dict, frame: int) -> str:
    """The file name a frame gets in exports: <video id>_<7-digit frame>, with the still's extension."""
    suffix = posixpath.splitext(video["path"])[1].lower() if video["kind"] == "image" and video["path"] else ".jpg"
    return f"{safe_stem(video['id'])}_{frame:07d}{suffix}"


def image_file_name(image: dict) -> str:
    """An image's file name (its id's last part, as a .jpg, if no file is recorded): how DIVE and VIAME
    name it."""
    return os.path.basename(image["path"]) if image["path"] else posixpath.basename(image["id"]) + ".jpg"


def this_process() -> str:
    """This process, as a run's ``owner``: host, pid and start time (a pid alone may be reused)."""
    import psutil

    return json.dumps([socket.gethostname(), os.getpid(), psutil.Process().create_time()])


def owner_state(owner: str | None) -> str:
    """'alive' or 'gone': whether the process a run records as training it still runs; 'unknown' for
    a run from before owners were recorded, or one trained on another machine."""
    if not owner:
        return "unknown"
    host, pid, started = json.loads(owner)
    if host != socket.gethostname():
        return "unknown"
    import psutil

    try:
        return "alive" if abs(psutil.Process(pid).create_time() - started) < 0.01 else "gone"
    except psutil.NoSuchProcess:
        return "gone"


def trained_elsewhere(run: Run) -> int | None:
    """The pid of another live process (on this machine) that is training ``run``, if one is."""
    if run.status != "running" or owner_state(run.owner) != "alive":
        return None
    pid = json.loads(run.owner)[1]
    return None if pid == os.getpid() else pid


def source_counts(videos: int, images: int, empty: str = "videos") -> list[tuple[str, int]]:
    """[("videos", n), ("images", m)], leaving out a kind with none; ``[(empty, 0)]`` when both are 0.

    ``videos`` counts the images too: an image is stored as a one-frame video.
    """
    out = [("videos", videos - images)] if videos - images else []
    return out + ([("images", images)] if images else []) or [(empty, 0)]


def counted(sources: list[tuple[str, int]]) -> str:
    """'1 video, 30 images' from :func:`source_counts`."""
    return ", ".join(f"{n} {noun.removesuffix('s') if n == 1 else noun}" for noun, n in sources)


@dataclass
class Run:
    """A training run as the store keeps it, or the record of outside weights that detections came from."""

    id: int
    name: str
    config: dict            # the run's settings (TrainConfig.to_dict()), or {"external_weights": ...}
    status: str             # pending, running, finished, failed or cancelled
    error: str | None
    started: float | None
    finished: float | None
    metrics: list[dict]     # one per epoch: losses, val metrics, what the loss dropped, the software
    summary: dict | None    # the final evaluation of the best weights, the classes a detection looked for
    weights: str | None     # the weights file, as stored (relative to the project where possible)
    owner: str | None       # the process training it (JSON: host, pid, start time)

    @property
    def is_training(self) -> bool:
        """A run trained here (not the record of weights trained elsewhere)."""
        return "rebalancing" in self.config

    @property
    def best_map50(self) -> float | None:
        """The best val mAP50 of its epochs, or None before the first."""
        return max((m.get("mAP50", 0.0) for m in self.metrics), default=None)

    @property
    def not_learned(self) -> bool:
        """A training run whose validation never reached LEARNED_MAP50: its detections are noise."""
        best = self.best_map50
        return self.is_training and best is not None and best < LEARNED_MAP50

    @property
    def not_learned_note(self) -> str:
        """What `bpr runs` and the app's run list say beside the score of a run that has not learned:
        "not learned", or "not learned yet" while it trains or can be resumed; "" for the others."""
        if not self.not_learned:
            return ""
        return "not learned" if self.status == "finished" else "not learned yet"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _decode_run(row: dict) -> Run:
    row = dict(row)
    row["config"] = json.loads(row["config"])
    row["metrics"] = json.loads(row["metrics"] or "[]")
    row["summary"] = json.loads(row["summary"]) if row["summary"] else None
    if row["status"] == "running" and owner_state(row["owner"]) == "gone":
        row["status"] = "cancelled"
        row["error"] = "interrupted: the process training it ended (resumable from its last epoch)"
    return Run(**row)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit outside our transaction)."""
    statements, current = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0].rstrip()
        if not line:
            continue
        current.append(line)
        if line.endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
