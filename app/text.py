"""Text shown to the user that Qt would otherwise lay out badly."""

from __future__ import annotations

import html


def tip(text: str) -> str:
    """A tooltip Qt wraps: plain text shows as one line as wide as the text (a 1000-px line for a
    paragraph); rich text wraps at a readable width."""
    return f"<p>{html.escape(text, quote=False)}</p>"
