"""Long work off the GUI thread: one worker per task, talking to widgets only through signals.

The work is a plain ``bpr`` function that takes ``progress`` and a stop flag. Stopping is cooperative
(the function checks the flag); nothing is ever terminated. Every error reaches ``failed`` with its
message, and from there the one error dialog of the main window.

A ``Worker`` lives on the GUI thread; its ``_Runner`` runs on a QThread. The runner's signals reach the
worker's slots queued, and the worker re-emits them on the GUI thread, so any callable connected to a
worker's signal (a lambda too, which PySide6 would otherwise call on the emitting thread) runs on the
GUI thread. The outcome (``finished``, ``failed`` or ``cancelled``) is held back until the thread has
ended, so that a handler asking ``thread.isRunning()`` gets False: relayed as it came, about one in
five outcomes arrived while the thread was still winding down, and the Train panel then left Stop
enabled and Start disabled after its run had ended.

Work that loads a model runs in a child process under :func:`in_child_process`: loading holds the GIL
in long stretches (importing torch, unpickling the weights: the window froze for up to 640 ms when
detection ran on a worker thread), and a hard crash there cannot take the app down.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot


class _Runner(QObject):
    progress = Signal(int, int, str)
    event = Signal(object)
    done = Signal(object)
    error = Signal(str, str)
    stopped = Signal(str)

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, stop: threading.Event, cancel_exceptions):
        super().__init__()
        self.fn, self.args, self.kwargs, self.stop = fn, args, kwargs, stop
        self.cancel_exceptions = cancel_exceptions

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(*self.args, progress=self.progress.emit, stop=self.stop, **self.kwargs)
        except self.cancel_exceptions as e:
            self.stopped.emit(str(e))
        except Exception as e:  # every error goes to the one error path, with its traceback
            self.error.emit(f"{type(e).__name__}: {e}", traceback.format_exc())
        else:
            self.done.emit(result)
        finally:
            self.thread().quit()


class Worker(QObject):
    """Runs ``fn(*args, progress=..., stop=..., **kwargs)`` on its own thread.

    ``fn`` receives ``progress(done, total, message)`` and a ``threading.Event`` as ``stop``. Other
    callbacks (training events) get :meth:`emitter`, which delivers to :attr:`event`.
    """

    progress = Signal(int, int, str)
    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)        # message, traceback
    cancelled = Signal(str)

    def __init__(self, fn: Callable, *args, cancel_exceptions: tuple = (), **kwargs):
        super().__init__()
        self.stop = threading.Event()
        self.kwargs = kwargs
        self.thread = QThread()
        self.thread.setObjectName(getattr(fn, "__name__", "worker"))
        self._runner = _Runner(fn, args, self.kwargs, self.stop, cancel_exceptions)
        self._runner.moveToThread(self.thread)
        self.thread.started.connect(self._runner.run)
        self._runner.progress.connect(self._relay_progress)
        self._runner.event.connect(self._relay_event)
        self._outcome: tuple[Signal, tuple] | None = None
        self._runner.done.connect(self._hold_done)
        self._runner.error.connect(self._hold_error)
        self._runner.stopped.connect(self._hold_stopped)
        self.thread.finished.connect(self._deliver)

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> None:
        self.stop.set()

    def emitter(self) -> Callable[[object], None]:
        return self._runner.event.emit

    def wait(self, ms: int = 30000) -> bool:
        return self.thread.wait(ms)

    @Slot(int, int, str)
    def _relay_progress(self, done, total, message):
        self.progress.emit(done, total, message)

    @Slot(object)
    def _relay_event(self, event):
        self.event.emit(event)

    @Slot(object)
    def _hold_done(self, result):
        self._outcome = (self.finished, (result,))

    @Slot(str, str)
    def _hold_error(self, message, details):
        self._outcome = (self.failed, (message, details))

    @Slot(str)
    def _hold_stopped(self, message):
        self._outcome = (self.cancelled, (message,))

    @Slot()
    def _deliver(self) -> None:
        """On the GUI thread once the thread has ended. The runner's outcome was queued before the
        thread's ``finished``, so it is held by then."""
        if self._outcome is not None:
            signal, args = self._outcome
            self._outcome = None
            signal.emit(*args)


class ChildCrashed(Exception):
    """A child process ended without reporting an outcome (killed, out of memory, segfault)."""

    def __init__(self, exit_code: int | None):
        super().__init__(f"exit code {exit_code}")
        self.exit_code = exit_code


def child_main(fn: Callable[..., Any], args: tuple, messages, stop) -> None:
    """In the child: ``fn(*args, send=..., stop=...)``; its value comes back through ``messages`` as
    ("done", value), an error as ("failed", message, traceback). ``send(message)`` passes anything else
    back as it comes."""
    import multiprocessing

    # The app starts the child as a daemon, so that it ends with the app; a daemon may not start
    # processes of its own, and on a GPU ultralytics loads data in `workers` of them. Only the child's
    # view of itself changes: the app still ends it when it quits.
    multiprocessing.current_process().daemon = False
    try:
        messages.put(("done", fn(*args, send=messages.put, stop=stop)))
    except BaseException as e:
        messages.put(("failed", f"{type(e).__name__}: {e}", traceback.format_exc()))


def in_child_process(fn: Callable[..., Any], args: tuple, stop: threading.Event,
                     on_message: Callable[[tuple], None], name: str, on_process=None) -> Any:
    """Run ``fn(*args, send=..., stop=...)`` (a module-level function: it is pickled) in a spawned child
    process, never forked from Qt, and return its value; each message it sends goes to ``on_message``.
    ``stop`` is passed on to the child. An error there comes back as RuntimeError with the child's
    traceback; a crash, as ChildCrashed."""
    import multiprocessing
    import queue as queue_module

    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    child_stop = ctx.Event()
    process = ctx.Process(target=child_main, args=(fn, args, messages, child_stop), name=name, daemon=True)
    process.start()
    if on_process is not None:
        on_process(process)
    try:
        while True:
            if stop.is_set():
                child_stop.set()
            try:
                message = messages.get(timeout=0.1)
            except queue_module.Empty:
                if process.is_alive():
                    continue
                try:  # what it sent as it ended may still be on its way
                    message = messages.get(timeout=1)
                except queue_module.Empty:
                    raise ChildCrashed(process.exitcode) from None
            if message[0] == "done":
                return message[1]
            if message[0] == "failed":
                raise RuntimeError(message[1] + "\n\n" + message[2])
            on_message(message)
    finally:
        process.join(timeout=30)
