"""Errors every stage raises the same way."""

from __future__ import annotations


class InputNotReadyError(RuntimeError):
    """An input the stage needs has not been produced (or did not pass its gates) for the month."""
