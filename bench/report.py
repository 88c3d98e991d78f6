"""The result of ``make bench``: every stage's record at one size, the table pairing each of our stages with
its reference, the JSON file written to ``bench/results/`` and the printed table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Self

from bench.harness import Machine
from bench.record import OPTIONAL, Record, TableRow
from bench.stages.delta_layer import DeltaLayerResult
from bench.stages.features import FeaturesResult
from bench.stages.generator import GeneratorResult
from bench.stages.ingest import IngestResult
from bench.stages.monthly import MonthlyResult
from bench.stages.offers import OffersResult
from bench.stages.score import ScoreResult
from bench.stages.train import TrainResult

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = ("stage", "ours s", "reference", "ref s", "ratio", "rows/s", "peak MB")

# the stages' keys in the JSON file and their records, in the order they run
STAGES: dict[str, type[Record]] = {
    "delta_layer": DeltaLayerResult,
    "generator": GeneratorResult,
    "ingest": IngestResult,
    "features": FeaturesResult,
    "train": TrainResult,
    "score": ScoreResult,
    "offers": OffersResult,
    "monthly": MonthlyResult,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchResult(Record):
    """Every stage at one size (the Delta layer and the generator only when the run measured them; one
    stage alone with ``--stage``)."""

    size: str
    machine: Machine
    subscribers: int
    months: int
    delta_layer: DeltaLayerResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    generator: GeneratorResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    ingest: IngestResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    features: FeaturesResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    train: TrainResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    score: ScoreResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    offers: OffersResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    monthly: MonthlyResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    table: list[TableRow] = dataclasses.field(default_factory=list)

    def stages(self) -> list[Record]:
        """The stages' records that are present, in the order they ran."""
        return [r for r in (getattr(self, name) for name in STAGES) if r is not None]

    def table_rows(self) -> list[TableRow]:
        """The table recomputed from the stages' records."""
        return [row for stage in self.stages() for row in stage.table_rows()]

    def with_table(self) -> BenchResult:
        return dataclasses.replace(self, table=self.table_rows())

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "table": [list(row) for row in self.table]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        stages = {name: record.from_dict(data[name]) for name, record in STAGES.items() if name in data}
        return cls(
            size=data["size"],
            machine=Machine.from_dict(data["machine"]),
            subscribers=data["subscribers"],
            months=data["months"],
            table=[TableRow(*row) for row in data["table"]],
            **stages,  # type: ignore[arg-type]
        )


def render_table(rows: list[TableRow]) -> str:
    """The rows as aligned text columns under a header, ``-`` where there is no value."""
    widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *rows, strict=True)]
    return "\n".join(
        "  ".join(str("-" if v is None else v).ljust(w) for v, w in zip(line, widths, strict=True))
        for line in (HEADER, *rows)
    )


def load_result(path: Path) -> BenchResult:
    return BenchResult.from_dict(json.loads(path.read_text()))


def write_result(result: BenchResult, folder: Path, stamp: str) -> Path:
    """``bench-<size>-<stamp>.json`` in ``folder``, and the same as ``latest.json``; the first's path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.to_dict(), indent=2)
    only = [name for name in STAGES if getattr(result, name) is not None]
    tag = f"-{only[0]}" if len(only) == 1 else ""
    path = folder / f"bench-{result.size}{tag}-{stamp}.json"
    path.write_text(text)
    (folder / "latest.json").write_text(text)
    return path
