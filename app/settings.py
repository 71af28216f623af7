"""What the app remembers between starts (Qt's settings): the last project, the window's layout."""

from __future__ import annotations

from pathlib import Path


def _settings():
    from PySide6.QtCore import QSettings

    return QSettings("bpr", "bpr-app")


def remember_project(folder) -> None:
    _settings().setValue("last_project", str(Path(folder).absolute()))


def last_project() -> Path | None:
    value = _settings().value("last_project")
    if value and (Path(value) / "project.sqlite").exists():
        return Path(value)
    return None


def save_layout(window) -> None:
    """The window's size, place and docks, for the next start."""
    settings = _settings()
    settings.setValue("geometry", window.saveGeometry())
    settings.setValue("window_state", window.saveState())


def restore_layout(window) -> bool:
    """The layout saved at the last close, if any; returns whether there was one."""
    settings = _settings()
    geometry, state = settings.value("geometry"), settings.value("window_state")
    if geometry is None:
        return False
    window.restoreGeometry(geometry)
    if state is not None:
        window.restoreState(state)
    return True
