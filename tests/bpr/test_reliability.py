"""The store under faults: killed (SIGKILL) while saving edits and while importing; readers and a
writer at once (WAL)."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bpr.store import Project
from tests.conftest import ROOT, shared

# Adds boxes one by one to video VIDEO, cycling over N frames from FIRST: EDITS PROJECT VIDEO FIRST N
EDITS = textwrap.dedent("""
    import sys
    from bpr.store import Project
    p = Project.open(sys.argv[1])
    video, first, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for i in range(100000):
        p.add_box(video, first + i % n, "urchin", (i % 100, 0, i % 100 + 10, 10))
        print(i + 1, flush=True)   # this edit is committed
""")

IMPORT = textwrap.dedent("""
    import sys
    from bpr.formats import import_dusia
    from bpr.store import Project
    p = Project.open(sys.argv[1])
    print("start", flush=True)
    import_dusia(p, sys.argv[2])
    print("done", flush=True)
""")


def spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_killed_while_saving_edits_keeps_every_committed_edit(tmp_path):
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    proc = spawn(EDITS, folder, "v", 0, 50)
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = p.conn.execute("SELECT count(*) FROM boxes").fetchone()[0]
    assert stored >= committed >= 300


@pytest.mark.parametrize("delay", [0.6, 1.6])
def test_killed_during_an_import_leaves_all_or_nothing(tmp_path, delay):
    root = shared("dusia_annotations")
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('mine')")
        p.add_box("mine", 0, "my species", (0, 0, 5, 5))
    proc = spawn(IMPORT, folder, root)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(delay)  # the import takes ~2.5 s: kill it part way (reading, or writing)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        boxes = p.conn.execute("SELECT count(*) FROM boxes").fetchone()[0]
        assert boxes in (1, 1 + 140_460)
        assert p.boxes("mine", 0)[0]["species"] == "my species"


READER = textwrap.dedent("""
    import sys, time
    from bpr.store import Project
    p = Project.open(sys.argv[1])
    last, reads, end = 0, 0, time.time() + float(sys.argv[2])
    while time.time() < end:
        n = p.summary()["boxes"]
        assert n >= last, (n, last)   # a reader never sees the count go back
        last, reads = n, reads + 1
    print(reads, last, flush=True)
""")


def test_two_readers_and_a_writer_at_once(tmp_path):
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    readers = [spawn(READER, folder, 3) for _ in range(2)]
    writer = spawn(EDITS, folder, "v", 0, 50)
    time.sleep(3.2)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    for reader in readers:
        out, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err
        reads, seen = map(int, out.split())
        assert reads > 10 and seen > 0
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
