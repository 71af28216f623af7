"""Start-up paths of the app: headless pipeline, first run builds the demo, the last project reopens."""

import csv

import pytest


@pytest.mark.slow
def test_headless_pipeline_writes_counts(tmp_path, capsys):
    from app.main import main

    assert main(["--headless", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "building the demo project" in out and "counts: " in out
    counts = next((tmp_path / "demo" / "exports").glob("*-counts.csv"))
    with open(counts) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["video"] for r in rows} == {"00002026112410300000"}


def test_first_run_builds_the_demo_then_the_last_project_reopens(qtbot, tmp_path):
    from app.main import last_project, open_initial_project
    from app.window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    open_initial_project(window, None)
    qtbot.waitUntil(lambda: window.state.project is not None, timeout=30000)
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

    from app.main import restore_layout
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
    assert "rendered frame 5" in out and "one detection step" in out and out.rstrip().endswith("self-test: ok")


def test_exit_after_shown_for_startup_timing(qapp, monkeypatch, tmp_path):
    from app.main import main

    monkeypatch.setenv("BPR_EXIT_AFTER_SHOWN", "1")
    assert main([str(tmp_path / "nowhere")]) == 0
