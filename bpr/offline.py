"""Keep ultralytics off the network: call :func:`configure` before anything imports ultralytics.

What each switch stops (read off ultralytics 8.4's source, see DESIGN.md): YOLO_OFFLINE the import-time
DNS probe and the version check on every train(); YOLO_AUTOINSTALL pip installs; YOLO_CONFIG_DIR keeps
its settings in our folder, where sync and the logging integrations are turned off; and a TrueType
font placed where ``check_font`` looks, since it downloads Arial on every train/val whatever ``plots``
says. (On CUDA the AMP check downloads a model: training passes ``amp`` explicitly for that.)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bpr.paths import user_config_dir

_configured = False


def _install_font(folder: Path) -> None:
    """Place a TrueType font under the names ultralytics asks for (any TTF renamed works)."""
    targets = [folder / "Arial.ttf", folder / "Arial.Unicode.ttf"]
    if all(t.exists() for t in targets):
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for target in targets:
        if not target.exists():
            shutil.copyfile(source, target)


def configure() -> Path:
    """Set every offline switch; returns ultralytics' config folder. Safe to call more than once."""
    global _configured
    config = user_config_dir() / "ultralytics"
    if _configured:
        return config
    if "ultralytics" in sys.modules and not os.environ.get("YOLO_OFFLINE"):
        raise RuntimeError("ultralytics was imported before bpr.offline.configure(); its import-time "
                           "network checks have already run")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["YOLO_CONFIG_DIR"] = str(config)
    _install_font(config / "Ultralytics")

    from ultralytics.utils import SETTINGS

    off = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
           "raytune": False, "wandb": False, "neptune": False, "hub": False, "tensorboard": False}
    wanted = {k: v for k, v in off.items() if k in SETTINGS and SETTINGS[k] != v}
    if wanted:
        SETTINGS.update(wanted)
    _configured = True
    return config
