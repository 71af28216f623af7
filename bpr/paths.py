"""Per-user folders, per platform: settings (config) and data (the demo project)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
