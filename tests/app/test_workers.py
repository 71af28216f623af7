"""A worker's outcome arrives on the GUI thread once its thread has ended, so buttons set from
``thread.isRunning()`` in an outcome handler show the panel idle."""

import pytest


class Cancelled(Exception):
    pass


def quick(outcome, progress, stop):
    progress(1, 1, "working")
    if outcome == "failed":
        raise ValueError("bad input")
    if outcome == "cancelled":
        raise Cancelled("stopped")
    return 42


@pytest.mark.parametrize("outcome", ["finished", "failed", "cancelled"])
def test_the_outcome_comes_after_the_thread_has_ended(qtbot, outcome):
    from app.workers import Worker

    # Relayed as they came, about one outcome in five arrived while the thread was still running.
    for _ in range(50):
        worker = Worker(quick, outcome, cancel_exceptions=(Cancelled,))
        seen = []
        for name in ("finished", "failed", "cancelled"):
            getattr(worker, name).connect(
                lambda *args, name=name: seen.append((name, args, worker.thread.isRunning())))
        progress = []
        worker.progress.connect(lambda *args: progress.append(args))
        with qtbot.waitSignal(getattr(worker, outcome), timeout=10000):
            worker.start()
        assert worker.wait(5000)
        qtbot.wait(1)  # a second delivery would be queued by now
        assert len(seen) == 1, seen
        name, args, running = seen[0]
        assert name == outcome and running is False
        assert progress == [(1, 1, "working")]
        assert args[0] == {"finished": 42, "failed": "ValueError: bad input", "cancelled": "stopped"}[outcome]


def _idle():
    pass


def start_a_process_of_its_own(send, stop):
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_idle)
    process.start()
    process.join()
    return process.exitcode


def test_work_in_a_child_process_may_start_processes_of_its_own():
    """ultralytics loads data in processes of its own on a GPU (the `workers` option): a daemonic
    child could not start them ("daemonic processes are not allowed to have children")."""
    import threading

    from app.workers import in_child_process

    assert in_child_process(start_a_process_of_its_own, (), threading.Event(), lambda message: None,
                            name="test-child") == 0
