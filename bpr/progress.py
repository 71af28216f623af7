"""The conventions of long work (imports, exports, training, detection), so that the command and the app
drive all of it alike: progress is reported through a callback, and a cancel callable is checked
between steps (a batch, a frame); the work then stops cleanly and says so."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]   # progress(done, total, message); total may be 0 when unknown
Cancel = Callable[[], bool]                  # cancel(): True once the user has asked to stop
