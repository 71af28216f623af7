"""Per-user folders, per platform: settings (config) and data (the demo project); files replaced whole."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _user_dir(override: str, windows_env: str, windows_default: str, xdg_env: str, xdg_default: str) -> Path:
    if os.environ.get(override):
        return Path(os.environ[override])
    if sys.platform == "win32":
        return Path(os.environ.get(windows_env, Path.home() / "AppData" / windows_default)) / "bpr"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "bpr"
    return Path(os.environ.get(xdg_env, Path.home() / xdg_default)) / "bpr"


def user_config_dir() -> Path:
    """Settings, and ultralytics' settings and font (BPR_CONFIG_DIR overrides)."""
    return _user_dir("BPR_CONFIG_DIR", "APPDATA", "Roaming", "XDG_CONFIG_HOME", ".config")


def user_data_dir() -> Path:
    """Data the app makes for the user, such as the demo project (BPR_DATA_DIR overrides)."""
    return _user_dir("BPR_DATA_DIR", "LOCALAPPDATA", "Local", "XDG_DATA_HOME", ".local/share")


def replace_whole(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write a file (``data``, or what ``data(file)`` writes) that another process may read meanwhile,
    or that a kill must not leave half-written.

    It goes to a temporary file beside it that then replaces it in one step, so a reader sees the old
    file or the new one, never a half-written one (two streams of one sweep started together did: the
    second read spec.json as the first rewrote it, and stopped on a JSON error).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}")  # one per process: each writes its own
    try:
        with open(temporary, "wb") as f:
            data(f) if callable(data) else f.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
