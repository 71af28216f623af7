"""Take the README's screenshots of the app in a real window (run under Xvfb, see below).

    bpr-app --headless LEARNED          # the demo's main job, once (about 5 minutes)
    xvfb-run -s "-screen 0 1600x1000x24" python scripts/screenshots.py docs/screenshots LEARNED

Builds the demo project in a temporary folder, then shows: browsing with labels, the species manager,
a training run with both rebalancing sliders on (live); then, in LEARNED (a demo project the main job
ran on), the Review panel with the plain run's detections and the finder reviewing a suggestion
(outlined, zoomed to), and the same window at 960x600.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
    learned = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if learned is None or not (learned / "exports" / "report.json").exists():
        print("give a demo project the main job has run on (bpr-app --headless FOLDER) as the second argument")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    from app.main import _clean_qt_environment

    _clean_qt_environment()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.window import MainWindow
    from bpr.demo import build_demo

    app = QApplication(sys.argv[:1])
    tmp = tempfile.TemporaryDirectory()
    demo = Path(tmp.name) / "demo"
    build_demo(demo)
    window = MainWindow()
    window.resize(1600, 1000)
    window.move(0, 0)
    window.show()
    window.open_project(demo)
    s = window.state

    def shot(name: str, screen: bool = False):
        """The window; with ``screen``, the screen where it lies, to show an open drop-down too."""
        app.processEvents()
        image = (app.primaryScreen().grabWindow(0, 0, 0, window.width(), window.height()) if screen
                 else window.grab())
        image.save(str(out / name))
        print("saved", out / name)

    steps = []

    def step(delay_ms, fn):
        steps.append((delay_ms, fn))

    def run_steps():
        if steps:
            delay, fn = steps.pop(0)
            QTimer.singleShot(delay, lambda: (fn(), run_steps()))

    def browse():
        s.set_video(s.project.videos("train")[0]["id"])
        s.set_frame(50)
        window.show_panel(window.labels)

    step(500, browse)
    step(700, lambda: shot("browse-labels.png"))

    def species_manager():
        from app.species import SpeciesDialog

        dialog = SpeciesDialog(s, window)
        dialog.move(500, 200)
        dialog.show()
        steps.insert(0, (600, lambda: shot("species-manager.png", screen=True)))
        steps.insert(1, (0, dialog.close))
    step(300, species_manager)

    def zoomed():
        window.view.zoom(2.0)
        window.brightness.setValue(40)
        window.contrast.setValue(140)
        QTimer.singleShot(0, window.image_button.showMenu)  # the sliders' drop-down, open
    step(300, zoomed)
    step(500, lambda: shot("zoom-enhance.png", screen=True))
    step(0, lambda: window.image_button.menu().hide())

    def start_training():
        window.view.fit()
        window.brightness.setValue(0)
        window.contrast.setValue(100)
        window.show_panel(window.train)
        t = window.train
        t.epochs.setValue(3)
        t.imgsz.setValue(160)
        t.device.setCurrentText("cpu")
        t.p_obj.setValue(75)
        t.p_box.setValue(25)
        t.start_button.click()
    step(300, start_training)

    def wait_for_training():
        worker = window.train.worker
        if worker.thread.isRunning():
            if len(window.train.curves.map50[0]) >= 2 and not getattr(wait_for_training, "shot", False):
                wait_for_training.shot = True
                shot("train-live.png")
            steps.insert(0, (500, wait_for_training))
    step(1000, wait_for_training)

    def review():
        window.open_project(learned)
        window.show_panel(window.review)
        plain = next(r.name for r in s.project.runs() if r.name.endswith("-plain"))
        window.review.run.setCurrentText(plain)  # its threshold chosen on val comes with it
        s.set_video(s.project.videos("train")[0]["id"])
        # the keyframe with the most suggestions of the finder
        window.review.refresh_all()
        frames = [x.frame_index for x in window.review.suggestions]
        s.set_frame(max(set(frames), key=frames.count) if frames else 20)

    step(3000, review)
    step(1500, lambda: shot("review-missing-labels.png"))

    def choose_suggestion():  # the finder as a review queue: the chosen suggestion outlined and zoomed to
        finder = window.review.missing
        if finder.topLevelItemCount():
            finder.setCurrentItem(finder.topLevelItem(0))
    step(300, choose_suggestion)
    step(1000, lambda: shot("review-queue.png"))

    def small():
        window.resize(960, 600)
        QTimer.singleShot(500, window.view.fit)
    step(300, small)
    step(1500, lambda: shot("window-960x600.png"))
    step(100, app.quit)
    run_steps()
    app.exec()
    window.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
