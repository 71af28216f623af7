"""The app keeps working while other processes read and write the same project (WAL)."""

import signal

from tests.bpr.test_reliability import EDITS, READER, spawn


def test_app_reads_while_another_process_writes_and_one_reads(window, qtbot):
    folder = window.state.project.folder
    reader = spawn(READER, folder, 4)
    s = window.state
    s.set_video(s.project.videos("train")[0]["id"])
    writer = spawn(EDITS, folder, s.video["id"], 7, 1)
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
