"""Frame-accurate video access with OpenCV: probe, read frame N, a forward fast path, an LRU frame cache.

Frame indices are 0-based decode order, as DUSIA's annotations (and CVAT) use. Reading frame N always
returns what sequential decoding from the start returns as its N-th frame: when N is the next frame the
decoder would give, it is read directly (no seek); otherwise OpenCV seeks, and the seek is checked.
"""

from __future__ import annotations

import errno
import os
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".mts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class VideoError(Exception):
    """A video cannot be opened or a frame cannot be decoded. The message names the file."""


def _fourcc(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else ""


def is_image(name: str | os.PathLike) -> bool:
    """Whether a file name (or path) has a still image's extension."""
    return os.path.splitext(os.fspath(name).strip())[1].lower() in IMAGE_EXTENSIONS


def natural_key(name: str) -> list:
    """Sort key putting ``img2`` before ``img10``, the order DIVE numbers an image folder's frames in."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]


def folder_images(folder: str | os.PathLike | None, also: Iterable[str] = ()) -> list[str]:
    """The image file names in ``folder`` (if any; plus ``also``), in natural order: an image sequence's
    frames."""
    names = set(also)
    if folder is not None and os.path.isdir(folder):
        with os.scandir(folder) as entries:
            names.update(e.name for e in entries if is_image(e.name) and e.is_file())
    return sorted(names, key=natural_key)


EXIF_ORIENTATION = 274


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from its header without decoding it.

    Raises FileNotFoundError, or VideoError for a file that is not a readable image. Once ultralytics
    is imported, PIL.Image.open retries an unidentified file through the optional pi-heif plugin, and
    then raises ModuleNotFoundError instead: it means the same here. (Under ultralytics 8.4.144 it did
    so for a missing file too, hence the check first.)
    """
    from PIL import Image

    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    try:
        with Image.open(path) as im:
            width, height = im.size
            # A camera's EXIF orientation 5 to 8 turns the picture a quarter turn: OpenCV (what
            # ultralytics trains with, and what shows a frame here) decodes it turned, so the labels are
            # on the turned picture. ultralytics' exif_size swaps the sides for 6 and 8.
            if im.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except FileNotFoundError:
        raise
    except ImportError:
        raise VideoError(f"{path}: not a readable image (an unknown or corrupt format)") from None
    except OSError as e:
        raise VideoError(f"{path}: not a readable image ({e})") from None


def probe(path: str | os.PathLike) -> dict:
    """fps, frame_count, width, height and codec of a video file (or of a still image)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if is_image(path):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # turned as its EXIF orientation says, as shown
        if image is None:
            raise VideoError(f"{path}: not a readable image")
        return {"fps": None, "frame_count": 1, "width": image.shape[1], "height": image.shape[0],
                "codec": path.suffix.lower().lstrip(".")}
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open it as a video (corrupt, or an unknown format)")
        info = {
            "fps": cap.get(cv2.CAP_PROP_FPS) or None,
            "frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "codec": _fourcc(cap.get(cv2.CAP_PROP_FOURCC)),
        }
        ok, _ = cap.read()
        if not ok or info["width"] <= 0 or info["frame_count"] <= 0:
            raise VideoError(f"{path}: opened, but no frame could be decoded (corrupt or truncated)")
        return info
    finally:
        cap.release()


def probe_status(path: Path) -> tuple[dict, str, str | None]:
    """(info, status, reason) for the store: 'ok', 'missing' or 'unreadable' with the reason."""
    if not Path(path).exists():
        return {}, "missing", f"{path}: no such file"
    try:
        return probe(path), "ok", None
    except VideoError as e:
        return {}, "unreadable", str(e)


def probe_video_file(video: dict, path: str | os.PathLike) -> tuple[dict, str, str | None, str | None]:
    """Probe ``path`` as the file of ``video`` (a row of the store): (info, status, reason, mismatch).

    ``mismatch`` says when the file's frame count differs from the one the labels were made on; the
    labels' count is kept then (left out of ``info``): the file may be another video, or re-encoded.
    """
    info, status, reason = probe_status(path)
    expected = video["frame_count"]
    if status == "ok" and expected and info["frame_count"] != expected:
        mismatch = f"{video['id']}: the file has {info['frame_count']} frames, the annotations {expected}"
        return {k: v for k, v in info.items() if k != "frame_count"}, status, reason, mismatch
    return info, status, reason, None


class FrameCache:
    """Least-recently-used decoded frames, bounded by their total size in bytes."""

    def __init__(self, max_mb: float = 256):
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.bytes = 0
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int) -> np.ndarray | None:
        frame = self._frames.get(index)
        if frame is not None:
            self._frames.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        if frame.nbytes > self.max_bytes:
            return
        old = self._frames.pop(index, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._frames[index] = frame
        self.bytes += frame.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._frames.popitem(last=False)
            self.bytes -= evicted.nbytes

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0


class VideoReader:
    """Reads frames of one video by 0-based decode index, as BGR uint8 arrays.

    Frames handed out are shared with the cache: treat them as read-only (copy before drawing).
    Not thread-safe: use one reader per thread.
    """

    def __init__(self, path: str | os.PathLike, cache_mb: float = 256):
        self.path = Path(path)
        info = probe(self.path)
        self.fps = info["fps"]
        self.frame_count = info["frame_count"]
        self.claimed_frame_count = self.frame_count  # what the header says; frame_count may shrink
        self.width, self.height = info["width"], info["height"]
        self.codec = info["codec"]
        self.cache = FrameCache(cache_mb)
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # index of the frame the decoder returns on the next read()
        self._is_image = is_image(self.path)
        self._frame_times: np.ndarray | None = None

    def __len__(self) -> int:
        return self.frame_count

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None:
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot open it as a video")
            self._next = 0
        return self._cap

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` exactly as sequential decoding gives it."""
        if self.frame_count <= index < self.claimed_frame_count:
            raise self._truncated(index)
        if not 0 <= index < self.frame_count:
            raise IndexError(f"{self.path.name}: frame {index} is outside 0..{self.frame_count - 1}")
        frame = self.cache.get(index)
        if frame is not None:
            return frame
        if self._is_image:
            frame = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
            if frame is None:
                raise VideoError(f"{self.path}: not a readable image")
        else:
            frame = self._decode(index)
        self.cache.put(index, frame)
        return frame

    def _decode(self, index: int) -> np.ndarray:
        # Short hops forward are cheaper to decode through than to seek (a seek decodes from the
        # previous keyframe anyway); beyond that, seek.
        if self._cap is None or not (self._next <= index <= self._next + 30):
            self._seek_before(index)
        cap = self._capture()
        while self._next < index:
            if not cap.grab():
                raise self._truncated(self._next)
            self._next += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            raise self._truncated(index)
        self._next = index + 1
        return frame

    def _seek_before(self, index: int) -> None:
        """Leave the decoder so that its next frame is at or just before ``index``.

        OpenCV's seek is not exact on every file: on a real MPEG-4 Part 2 clip (irregular timestamps)
        seeking to frame 100 returned frame 101 while reporting 100. So the seek aims a little early,
        the frame it lands on is identified by its timestamp against a table of every frame's
        timestamp (read from the packets, without decoding), and decoding goes forward from there.
        """
        timestamps = self._timestamps()
        margin = 2
        while True:
            start = max(0, index - margin)
            if start == 0:
                self.close()  # a fresh decoder starts at frame 0 for certain
                self._capture()
                return
            cap = self._capture()
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            if timestamps is None:  # no usable timestamps: trust OpenCV's seek
                self._next = start
                return
            if not cap.grab():
                raise self._truncated(start)
            landed = int(np.abs(timestamps - cap.get(cv2.CAP_PROP_POS_MSEC)).argmin())
            if landed < index:  # the grabbed frame is consumed; decoding goes on from the next
                self._next = landed + 1
                return
            margin *= 4  # landed on or past the target: aim further back

    def _timestamps(self) -> np.ndarray | None:
        """Presentation time (ms) of every frame in display order, from one pass over the packets."""
        if self._frame_times is None:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
            times = []
            try:
                while cap.isOpened() and cap.grab():
                    times.append(cap.get(cv2.CAP_PROP_POS_MSEC))
            finally:
                cap.release()
            table = np.sort(np.asarray(times, dtype=np.float64))
            usable = len(table) > 1 and np.isfinite(table).all() and (np.diff(table) > 0).all()
            self._frame_times = table if usable else np.empty(0)
            if usable and len(table) < self.frame_count:
                self.frame_count = len(table)  # the header promised frames the file does not hold
        return self._frame_times if len(self._frame_times) else None

    def _truncated(self, index: int) -> VideoError:
        self.close()  # the decoder is at an unknown position now
        return VideoError(
            f"{self.path}: frame {index} cannot be decoded although the file claims "
            f"{self.claimed_frame_count} frames (truncated or corrupt)")

    def frames(self, start: int = 0, stop: int | None = None, step: int = 1):
        """Yield (index, frame) forward without seeking between frames; nothing is cached."""
        stop = self.frame_count if stop is None else min(stop, self.frame_count)
        for index in range(start, stop, step):
            cached = self.cache.get(index)
            if cached is not None:
                yield index, cached
            elif self._is_image:
                yield index, self.read(index)
            else:
                yield index, self._decode(index)
