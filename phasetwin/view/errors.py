"""The view's error, apart from the heavy modules that raise it (``phasetwin view --help`` imports only this)."""

from __future__ import annotations


class RunFolderError(ValueError):
    """A folder the view cannot show; the message names the folder and what is missing."""
