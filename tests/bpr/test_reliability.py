"""The store under faults: killed (SIGKILL) while saving edits and while importing; readers and a
writer at once (WAL)."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bpr.data.store import Project
from tests.conftest import ROOT, shared

# Adds boxes one by one to video VIDEO, cycling over N frames from FIRST, and acknowledges each edit once
# add_box has returned: EDITS PROJECT VIDEO FIRST N [PAUSE_AT]. With PAUSE_AT it stops after that edit,
# announces it, and waits to be killed, so that the kill lands at a known edit.
EDITS = textwrap.dedent("""
    import sys, time
    from bpr.data.store import Project
    p = Project.open(sys.argv[1])
    video, first, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pause_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
    for i in range(100000):
        p.add_box(video, first + i % n, "urchin", (i % 100, 0, i % 100 + 10, 10))
        print(i + 1, flush=True)   # this edit is acknowledged: it must survive a kill from now on
        if i + 1 == pause_at:
            print("paused", flush=True)
            time.sleep(300)
""")

# Imports SOURCE with IMPORTER (import_viame or import_dusia) and, once WHEN boxes have been written
# inside the import's transaction, announces it (with whether a transaction is open) and waits to be
# killed there: IMPORT PROJECT IMPORTER SOURCE WHEN
IMPORT = textwrap.dedent("""
    import sys, time
    from bpr.data import formats
    from bpr.data.store import Project
    p = Project.open(sys.argv[1])
    importer, when = getattr(formats, sys.argv[2]), int(sys.argv[4])

    def progress(done, total, message):
        if message == "writing boxes" and done >= when:
            print("inside the write", done, p.conn.in_transaction, flush=True)
            time.sleep(300)

    importer(p, sys.argv[3], progress=progress)
    print("done", flush=True)
""")


def spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_and_drain(proc) -> list[str]:
    """SIGKILL the child, then read what it wrote before it died (the parent may not have read it yet)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.stdout.read().split()  # through the same buffer the parent read from: no line is lost


def stored_boxes(folder) -> int:
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return p.conn.execute("SELECT count(*) FROM boxes").fetchone()[0]


def test_killed_while_saving_edits_keeps_every_acknowledged_edit(tmp_path):
    """Killed while it keeps editing: every edit acknowledged before the kill is stored, and at most the
    one being written when it died (stored, but not yet acknowledged) more."""
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    proc = spawn(EDITS, folder, "v", 0, 50)
    for line in proc.stdout:
        if int(line) >= 300:
            break
    acknowledged = int(([line] + kill_and_drain(proc))[-1])
    assert acknowledged >= 300
    assert acknowledged <= stored_boxes(folder) <= acknowledged + 1


@pytest.mark.parametrize("edits", [1, 313])
def test_killed_after_an_acknowledged_edit_keeps_exactly_the_edits_made(tmp_path, edits):
    """The kill lands at a known edit (313: no round batch size divides it): all of them are there."""
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    proc = spawn(EDITS, folder, "v", 0, 50, edits)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == "paused":
            break
    lines += kill_and_drain(proc)
    assert lines[-2:] == [str(edits), "paused"]
    assert stored_boxes(folder) == edits


def big_viame_csv(folder, boxes: int):
    """A VIAME CSV of ``boxes`` boxes, 10 a frame."""
    rows = [f"{i},clip.mp4,{i // 10},{i % 10 * 20},0,{i % 10 * 20 + 15},15,1,-1,urchin,1" for i in range(boxes)]
    path = folder / "clip.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("source", ["viame", "dusia"])
def test_killed_inside_an_import_transaction_leaves_nothing_of_it(tmp_path, source):
    """The child announces that it is inside the write transaction, with boxes written, and is killed
    there: the store has only what it had before."""
    if source == "viame":
        importer, path, total, when = "import_viame", big_viame_csv(tmp_path, 70_000), 70_000, 60_000
    else:
        importer, path, total, when = "import_dusia", shared("dusia_annotations"), 140_460, 100_000
    folder = tmp_path / "p"
    with Project.create(folder) as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('mine')")
        p.add_box("mine", 0, "my species", (0, 0, 5, 5))
    proc = spawn(IMPORT, folder, importer, path, when)
    announced = proc.stdout.readline().split()
    kill_and_drain(proc)
    assert announced[:3] == ["inside", "the", "write"], (announced, proc.stderr.read())
    assert int(announced[3]) >= when and announced[4] == "True"  # boxes written, the transaction open
    assert stored_boxes(folder) == 1
    with Project.open(folder) as p:
        assert p.boxes("mine", 0)[0]["species"] == "my species"

    # and the same import, let run, writes every box: the kill above was not before any write
    with Project.open(folder) as p:
        getattr(__import__("bpr.data.formats", fromlist=[importer]), importer)(p, path)
    assert stored_boxes(folder) == 1 + total


READER = textwrap.dedent("""
    import sys, time
    from bpr.data.store import Project
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
    kill_and_drain(writer)
    for reader in readers:
        out, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err
        reads, seen = map(int, out.split())
        assert reads > 10 and seen > 0
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
