"""The Qt binding itself: PySide6 6.12.0 lost a reference to None on every Python slot call, which
aborts Python 3.11 ("none_dealloc") after a few thousand timer ticks or progress signals."""

import sys

import pytest
from PySide6.QtCore import QObject, QTimer, Signal


class Emitter(QObject):
    signal = Signal(object)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12: its reference count "
                    "never changes, so the leak can neither abort Python nor be seen")
def test_slot_calls_do_not_leak_references_to_none(qapp):
    calls = [0]

    def tick():
        calls[0] += 1

    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(tick)
    emitter = Emitter()
    emitter.signal.connect(lambda value: None)
    before = sys.getrefcount(None)
    timer.start()
    while calls[0] < 2000:
        qapp.processEvents()
    timer.stop()
    for _ in range(2000):
        emitter.signal.emit({"progress": 1})
    assert sys.getrefcount(None) > before - 100  # one lost per call would be 4000 fewer
