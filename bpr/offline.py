"""Keep ultralytics off the network: call :func:`configure` before anything imports ultralytics.

What each switch stops (read off ultralytics 8.4's source): YOLO_OFFLINE the import-time
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


def local_weights(path: str | os.PathLike) -> Path:
    """A path to local weights that ultralytics will load as they are, never downloading.

    ultralytics renames any path ending in an official YOLOv5/v3 file name (``yolov5n.pt``, with no
    "u" anywhere in the path) to its "u" release name and then tries to download that. Such files
    are linked (or copied) under a neutral name in bpr's folder first.
    """
    import hashlib

    configure()
    from ultralytics.utils.checks import check_yolov5u_filename

    path = Path(path).absolute()
    if not path.is_file():
        raise FileNotFoundError(f"model weights {path} not found")
    if check_yolov5u_filename(str(path), verbose=False) == str(path):
        return path
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    safe = user_config_dir() / "weights" / f"local-{digest}-{path.stem}-weights.pt"
    safe.parent.mkdir(parents=True, exist_ok=True)
    if safe.exists() and safe.stat().st_mtime < path.stat().st_mtime:
        safe.unlink()  # the original changed since it was linked (copies do not follow)
    if not safe.exists():
        try:
            os.link(path, safe)
        except OSError:
            shutil.copy2(path, safe)
    return safe
