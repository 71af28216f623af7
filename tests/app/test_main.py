"""Start-up paths of the app: headless pipeline, first run builds the demo, the last project reopens."""

import csv
import re

import pytest


@pytest.mark.slow
def test_headless_pipeline_writes_the_report_and_counts(tmp_path, capsys, monkeypatch):
    """The README's main job, with a recipe far smaller than its own (CI's budget; the real one is timed
    by benchmarks/bench_demo.py)."""
    import bpr.demo
    from app.main import main

    monkeypatch.setattr(bpr.demo, "RECIPE", bpr.demo.Recipe(base_epochs=2, epochs=1, imgsz=96))
    assert main(["--headless", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "building the demo project" in out and "counts: " in out and "| plain |" in out
    assert (tmp_path / "demo" / "exports" / "report.json").exists()
    counts = next((tmp_path / "demo" / "exports").glob("*-counts.csv"))
    with open(counts) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["video"] for r in rows} == {"00002026112410300000"}
    assert all(float(r["threshold"]) > 0.0001 for r in rows)  # thresholds chosen on val, not a floor


def test_first_run_builds_the_demo_then_the_last_project_reopens(qtbot, tmp_path):
    from app.main import open_initial_project
    from app.settings import last_project
    from app.window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    open_initial_project(window, None)
    # a limit, not a target: it builds the demo in seconds, and took over 30 s on 2 busy cores
    qtbot.waitUntil(lambda: window.state.project is not None, timeout=120000)
    assert window.state.project.folder == tmp_path / "data" / "demo"
    assert last_project() == tmp_path / "data" / "demo"
    other = MainWindow()
    qtbot.addWidget(other)
    open_initial_project(other, None)
    assert other.state.project.folder == tmp_path / "data" / "demo"


def test_the_window_comes_back_as_it_was_closed(qtbot):
    """Its docks as the user left them (the size too, which the offscreen test screen clamps)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    from app.settings import restore_layout
    from app.window import MainWindow

    def docks(window):
        return {d.objectName(): (window.dockWidgetArea(d), d.isHidden()) for d in window.findChildren(QDockWidget)}

    window = MainWindow()
    qtbot.addWidget(window)
    assert not restore_layout(window)  # first start: nothing saved
    window.show()
    panels = window.findChild(QDockWidget, "panels")
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, panels)
    window.videos_dock.hide()
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert docks(again) != docks(window)
    assert restore_layout(again)
    again.show()
    assert docks(again) == docks(window) == {"videos": (Qt.DockWidgetArea.LeftDockWidgetArea, True),
                                             "panels": (Qt.DockWidgetArea.LeftDockWidgetArea, False)}


def test_self_test(qapp, capsys):
    from app.main import main

    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert "rendered frame 5" in out and "one detection step in a child process" in out
    dropped = re.search(r"trained one epoch in a child process, (\d+)% of negatives dropped from objectness", out)
    assert dropped and 70 <= int(dropped.group(1)) <= 80  # asked for 75 %, drawn at random per step
    assert out.rstrip().endswith("self-test: ok")


def test_exit_after_shown_for_startup_timing(qapp, monkeypatch, tmp_path):
    """The window is up, says how long it took, and no project was opened (the timing is start-up alone)."""
    from app.main import main
    from app.window import MainWindow

    shown = []
    real_show = MainWindow.show
    monkeypatch.setattr(MainWindow, "show", lambda self: (real_show(self), shown.append(self)))
    monkeypatch.setenv("BPR_EXIT_AFTER_SHOWN", "1")
    assert main([str(tmp_path / "nowhere")]) == 0
    [window] = shown
    assert window.isVisible()
    assert re.fullmatch(r"window up in \d+\.\d\d s", window.statusBar().currentMessage())
    assert not (tmp_path / "nowhere").exists()
    window.close()


def test_a_missing_display_or_x11_library_is_said_plainly(capsys, monkeypatch):
    """Qt aborts on either (exit 134), advising a reinstall and naming libxcb-cursor0 whatever is missing;
    the app names what is missing instead."""
    from app.main import display_problem, main

    missing = "a system library it needs is not installed (libxcb-icccm.so.4: cannot open shared object file)"
    x11 = {"DISPLAY": ":0"}
    assert display_problem(x11, "linux", lambda display: None) is None
    message = display_problem(x11, "linux", lambda display: missing)
    assert f"{missing}. Install it" in message and "`sudo apt install libxcb-icccm4`" in message
    assert "`sudo apt install libxkbcommon-x11-0`" in display_problem(
        x11, "linux", lambda display: "not installed (libxkbcommon-x11.so.0: cannot open shared object file)")
    message = display_problem({"DISPLAY": ":5"}, "linux", lambda display: f"no X server answers on {display}")
    assert message.startswith("Qt cannot open a window: no X server answers on :5.") and "ssh -X" in message
    assert "bpr-app --headless" in display_problem({}, "linux", lambda display: None)
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", lambda display: missing) is None
    assert missing in display_problem({"WAYLAND_DISPLAY": "w", "QT_QPA_PLATFORM": "xcb"}, "linux",
                                      lambda display: missing)
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", lambda display: missing) is None
    assert display_problem({}, "win32", lambda display: missing) is None

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main([]) == 1
    assert capsys.readouterr().err.startswith("bpr-app: no display to open a window on")


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="X11 is Linux's")
def test_a_display_nobody_serves_is_found_before_qt_aborts():
    """The real check, against a display number no X server holds."""
    from app.main import _x11_error

    error = _x11_error(":97")
    assert error == "no X server answers on display ':97'" or "not installed" in error
