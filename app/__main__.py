"""``python -m app``: start the desktop app."""

import multiprocessing
import sys

from app.main import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen bundle's training process starts here too
    sys.exit(main())
