"""The app keeps working while other processes read and write the same project (WAL)."""

import signal
import subprocess
import sys
import textwrap

from tests.bpr.test_reliability import READER
from tests.conftest import ROOT

WRITER = textwrap.dedent("""
    import sys
    from bpr.store import Project
    p = Project.open(sys.argv[1])
    video = p.videos("train")[0]["id"]
    for i in range(100000):
        p.add_box(video, 7, "urchin", (i % 300, 0, i % 300 + 10, 10))
        print(i + 1, flush=True)
""")


def test_app_reads_while_another_process_writes_and_one_reads(window, qtbot):
    folder = window.state.project.folder
    reader = subprocess.Popen([sys.executable, "-c", READER, str(folder), "4"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s = window.state
    s.set_video(s.project.videos("train")[0]["id"])
    seen = []
    for line in writer.stdout:   # the app keeps reading the frame the writer is writing to
        if int(line) % 50 == 0:
            s.set_frame(7)
            s.reload()
            seen.append(len(s.labels()))
        if int(line) >= 400:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert seen == sorted(seen) and seen[-1] > seen[0]
    s.reload()
    assert len(s.labels()) >= 400
    assert s.project.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
