"""The PySide6 desktop app over the bpr library (arrives with the desktop-app issue)."""
