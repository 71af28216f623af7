"""GUI test fixtures: settings in a temporary folder, the main window over a copy of a project."""

import shutil

import pytest

pytest.importorskip("PySide6")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("BPR_DATA_DIR", str(tmp_path / "data"))
    # Confirmation boxes would wait for a click: record them instead.
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda *args, **kw: shown.append(args[2]))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: box.defaultButton().click())  # its default answer
    return shown


@pytest.fixture
def make_window(qtbot, tmp_path):
    from app.window import MainWindow

    def make(template):
        folder = tmp_path / "project"
        shutil.copytree(template, folder)
        window = MainWindow()
        qtbot.addWidget(window)
        window.show()
        window.open_project(folder)
        return window

    yield make


@pytest.fixture
def window(make_window, demo_template):
    return make_window(demo_template)
