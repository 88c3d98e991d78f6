"""Typed benchmark results that serialise to the JSON shape of the files in ``bench/results/``.

A result is a frozen dataclass whose fields are the keys of its JSON object, in the same order. A field
the benchmark measured only from some point on is optional (``metadata=OPTIONAL``): files written before
it lack the key, they load with ``None`` and dump without it again, so every committed file round-trips.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Self

_OPTIONAL = "optional_key"
# the metadata of a key some results lack (measured only later, or a stage not run): declared as
# ``field(default=None, metadata=OPTIONAL)``, ``None`` where it is absent and omitted again on dump
OPTIONAL = {_OPTIONAL: True}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """A flat JSON object as a dataclass (values: numbers, strings, None, or dicts of those)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OPTIONAL):
                continue
            out[f.name] = value.to_dict() if isinstance(value, Record) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The record of ``data``; a key the record does not know, or a missing one, raises ``TypeError``."""
        return cls(**data)

    def table_rows(self) -> list[TableRow]:
        """The lines this result adds to the printed table (none by default)."""
        return []


class TableRow(NamedTuple):
    """One line of the printed table (a JSON list in the result's ``table``): our time against a
    reference doing the same work, the ratio (ours / reference), our rows per second and peak memory."""

    stage: str
    seconds: float
    reference: str
    reference_seconds: float | None
    ratio: float | None
    rows_per_s: int | None
    peak_mb: int | None


def compare(
    stage: str,
    ours: float,
    reference: str = "-",
    reference_seconds: float | None = None,
    *,
    rows: int | None,
    peak_mb: int | None = None,
) -> TableRow:
    """The table row of ``ours`` seconds against ``reference_seconds`` (``None``: nothing to pair)."""
    ratio = round(ours / reference_seconds, 2) if reference_seconds else None
    rate = round(rows / ours) if rows and ours else None
    ref_s = None if reference_seconds is None else round(reference_seconds, 2)
    return TableRow(stage, round(ours, 2), reference, ref_s, ratio, rate, peak_mb)
