"""Start the app: ``bpr-app [PROJECT]`` or ``python -m app``. Opens the last project, else the demo."""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

from app.settings import last_project, restore_layout
from bpr.paths import user_data_dir

STARTED = time.perf_counter()


def _clean_qt_environment() -> None:
    """opencv-python points Qt at its own bundled Qt 5 plugins on import; PySide6 must not use them."""
    import cv2

    for key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if os.environ.get(key, "").startswith(str(Path(cv2.__file__).parent)):
            del os.environ[key]


def _x11_error(display: str) -> str | None:
    """Why Qt's X11 plugin cannot open a window on ``display``: a system library it lacks (the first),
    or no X server answering there; None when it can."""
    import ctypes

    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    if not plugin.exists():
        return None   # a build without it: Qt will say what it has
    try:
        ctypes.CDLL(str(plugin))
        xcb = ctypes.CDLL("libxcb.so.1")   # loaded by the plugin already
    except OSError as e:
        return f"a system library it needs is not installed ({e})"
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    failed = xcb.xcb_connection_has_error(connection)
    xcb.xcb_disconnect(connection)
    return f"no X server answers on display {display!r}" if failed else None


def _debian_package(error: str) -> str | None:
    """Debian's package for a missing 'libNAME.so.N': libNAME + N, with a hyphen after a digit."""
    match = re.search(r"(lib[\w.+-]+?)\.so\.(\d+)", error)
    if match is None:
        return None
    name, version = match.groups()
    return f"{name}{'-' if name[-1].isdigit() else ''}{version}"


def display_problem(environ=os.environ, platform: str = sys.platform, x11_error=_x11_error) -> str | None:
    """Why Qt cannot open a window here, in words a user can act on; None when nothing stands in the way.

    On Linux, Qt aborts the process on each of these, advising a reinstall that does not help and
    naming libxcb-cursor0 whatever is missing: no display set (an SSH session, a server), a system
    library its X11 plugin needs (minimal installs lack some), or a DISPLAY no X server answers on.
    """
    if not platform.startswith("linux"):
        return None
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen and not chosen.startswith(("xcb", "wayland")):
        return None   # offscreen, vnc, eglfs ...: no desktop display needed
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        return ("no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set). On a machine "
                "without a desktop, `bpr-app --headless` runs the demo workflow and the `bpr` command does "
                "everything else; over SSH, connect with `ssh -X` to see the window.")
    if chosen.startswith("wayland") or (not chosen and environ.get("WAYLAND_DISPLAY")):
        return None   # Qt's Wayland plugin needs none of the X11 libraries
    error = x11_error(environ.get("DISPLAY", ""))
    if error is None:
        return None
    package = _debian_package(error)
    if package is None:
        return (f"Qt cannot open a window: {error}. Over SSH, connect with `ssh -X`; on a machine without a "
                "desktop, `bpr-app --headless` runs the demo workflow and the `bpr` command does everything else.")
    return (f"Qt cannot open a window on X11: {error}. Install it (Debian/Ubuntu: `sudo apt install "
            f"{package}`), then start bpr-app again; it names the next one if more are missing.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpr-app", description="The bpr desktop app.")
    parser.add_argument("project", nargs="?", help="project folder (default: the last one, else the demo)")
    parser.add_argument("--headless", action="store_true",
                        help="no window: the main job on the demo project PROJECT (default: the demo "
                             "project): train plain and one round of self-training, score both against the "
                             "demo's truth, write the report and the counts, and print where they are")
    parser.add_argument("--self-test", action="store_true",
                        help="offscreen: open the demo, render a frame with labels, run one detection "
                             "step; exit 0 if all worked (checks an installation or a bundle)")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.headless:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # the job says what it does; ultralytics' bars would bury it
        from bpr.demo import run_pipeline

        run_pipeline(Path(args.project) if args.project else user_data_dir() / "demo")
        return 0
    _clean_qt_environment()
    if (problem := display_problem()) is not None:
        print(f"bpr-app: {problem}", file=sys.stderr)
        return 1
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("bpr")
    window = MainWindow()
    window.keep_dock_widths = restore_layout(window)
    window.show()
    window.statusBar().showMessage(f"window up in {time.perf_counter() - STARTED:.2f} s")
    if os.environ.get("BPR_EXIT_AFTER_SHOWN"):  # start-up timing (benchmarks, the bundle script)
        app.processEvents()
        return 0
    QTimer.singleShot(0, lambda: open_initial_project(window, args.project))
    QTimer.singleShot(500, window.train.find_devices)
    return app.exec()


def self_test() -> int:
    """Exercise the pieces a broken install or bundle would lose: Qt platform plugins, OpenCV's video
    decoding, the store, torch and ultralytics (their model files and trainer too), child processes.
    Prints each step."""
    import tempfile

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _clean_qt_environment()
    from PySide6.QtWidgets import QApplication

    from app.frame_view import BoxItem
    from app.window import MainWindow
    from bpr.demo import build_demo, demo_training

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            demo = Path(tmp) / "demo"
            build_demo(demo)
            print("self-test: built the demo project")
            window = MainWindow()
            window.show()
            window.open_project(demo)
            window.state.set_frame(5)
            app.processEvents()
            boxes = [i for i in window.view.scene().items() if isinstance(i, BoxItem)]
            pixmap = window.view.pixmap_item.pixmap()
            if pixmap.isNull() or window.view.error or not boxes:
                raise RuntimeError(f"frame not rendered with labels ({window.view.error or len(boxes)})")
            print(f"self-test: rendered frame 5 ({pixmap.width()}x{pixmap.height()}) with {len(boxes)} labels")
            from app.review_panel import detect_job
            from app.train_panel import train_job

            # as the app's Start and Detect buttons do, each in a child process: a frozen bundle must be
            # able to start one, and its training must find what ultralytics' trainer imports
            run = train_job(str(demo), demo_training(device="cpu"), "selftest", None, progress=None,
                            stop=threading.Event(), on_event=lambda event: None)
            drop = run.metrics[-1]["drop"] if run.status == "finished" and run.metrics else {}
            if not drop.get("obj_drop_fraction"):
                raise RuntimeError(f"training did not finish an epoch with objectness drop on ({run.status})")
            print(f"self-test: trained one epoch in a child process, {drop['obj_drop_fraction']:.0%} of "
                  "negatives dropped from objectness")
            summary = detect_job(str(demo), dict(run="selftest", videos=[window.state.video["id"]], stop=1,
                                                 device="cpu", min_conf=0.0001),
                                 progress=lambda done, total, message: None, stop=threading.Event())
            if summary.frames != 1:
                raise RuntimeError(f"detection processed {summary.frames} frames, expected 1")
            print(f"self-test: one detection step in a child process ({summary.detections} boxes from a "
                  "one-epoch model)")
            window.close()
        except Exception as e:
            print(f"self-test failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print("self-test: ok")
    return 0


def open_initial_project(window, requested: str | None) -> None:
    """The requested project, else the last one, else the demo (built on first run, on a worker)."""
    from app.workers import Worker

    folder = Path(requested) if requested else last_project()
    if folder is not None:
        try:
            window.open_project(folder)
        except Exception as e:
            window.show_error("Cannot open project", str(e))
        return
    demo = user_data_dir() / "demo"
    if (demo / "project.sqlite").exists():
        window.open_project(demo)
        return

    def build(progress, stop):
        from bpr.demo import build_demo

        return build_demo(demo, progress=progress)

    window.run_worker("Building the demo project", Worker(build), lambda _: window.open_project(demo))


if __name__ == "__main__":
    sys.exit(main())
