"""Errors of the pure layer: inputs that do not have the columns or types a computation needs.

They live here, not with the Delta layer, so ``features/`` and ``models/`` validate their inputs without
importing ``pipelines``; the Delta layer raises the same classes for table writes.
"""

from __future__ import annotations

from collections.abc import Sequence


class SchemaMismatchError(ValueError):
    """The data's schema does not match the table's; the message lists the differences."""


class MissingColumnsError(SchemaMismatchError):
    """The data lacks columns the table (or a contract) requires."""

    def __init__(self, missing: Sequence[str], where: str) -> None:
        self.missing = list(missing)
        super().__init__(f"{where}: missing columns {', '.join(self.missing)}")
