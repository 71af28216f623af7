"""``python -m app``: start the desktop app."""

import sys

from app.main import main

sys.exit(main())
