"""The folder layout is the dependency graph, checked on the parsed code (``ast``), not by regex.

- ``features/`` and ``models/`` are pure: no I/O, no clock, no Spark session, no MLflow; they import only
  an allowlist (the standard library's pure modules, the compute libraries, each other).
- ``features/`` and ``models/`` trigger no Spark action either (``collect``, ``toPandas``, ``show``, ...):
  they build transformations and the stage decides when to run them.
- ``pipelines/core/`` is shared plumbing: it never imports a stage (``pipelines.<stage>``).
- A stage never imports another stage: what two stages share (a table schema, the maturity rule) lives in
  ``pipelines/core/``. Only the orchestrators (:data:`ORCHESTRATORS`) import stages.
- ``jobs/`` are thin front doors over ``pipelines``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PURE_IMPORTS = {
    "__future__", "abc", "bisect", "calendar", "collections", "copy", "dataclasses", "datetime", "decimal",
    "enum", "fnmatch", "functools", "hashlib", "heapq", "itertools", "json", "logging", "math", "numbers",
    "operator", "re", "statistics", "string", "typing", "warnings",
    "numpy", "pandas", "pyarrow", "pyarrow.compute", "pydantic", "pydantic_core", "scipy", "sklearn",
    "lightgbm", "matplotlib",
    "pyspark.sql", "pyspark.sql.functions", "pyspark.sql.types", "pyspark.sql.window", "pyspark.sql.column",
    "features", "models",
}  # fmt: skip
# prefixes allowed with any submodule (scipy.optimize, sklearn.linear_model, features.usage, ...)
PURE_PREFIXES = (
    "matplotlib.",
    "scipy.",
    "statsmodels.",
    "sklearn.",
    "features.",
    "models.",
    "pandas.",
    "numpy.",
    "collections.",
)
# calls that read or write data, build sessions or read the clock, by their dotted tail
IO_CALLS = {
    "open": "opens files",
    "read": "reads tables",
    "write": "writes tables",
    "table": "reads a table",
    "saveAsTable": "writes a table",
    "getOrCreate": "builds a Spark session",
    "builder": "builds a Spark session",
    "now": "reads the clock",
    "today": "reads the clock",
    "utcnow": "reads the clock",
    "perf_counter": "reads the clock",
    "monotonic": "reads the clock",
    "current_date": "reads the clock",
    "current_timestamp": "reads the clock",
    "read_csv": "reads files",
    "read_parquet": "reads files",
    "to_parquet": "writes files",
    "to_csv": "writes files",
}
# The one reading a pure module may do: ``features.params`` takes the parameter defaults from
# ``conf/base.yml`` (the project's own file, read once at import), so each value is written once.
DEFAULTS_READER = ("features/params.py", {"pathlib", "pathlib.Path", "yaml", "functools"})
# Spark actions (they run a job) by their attribute name; ``write``/``saveAsTable`` are I/O calls above.
# ``count()`` and ``first()`` are left out: pandas has them too, and no parse tells the two apart
SPARK_ACTIONS = {
    "collect": "collects rows (a Spark action)",
    "toPandas": "collects rows (a Spark action)",
    "toLocalIterator": "collects rows (a Spark action)",
    "show": "prints rows (a Spark action)",
    "foreach": "runs a Spark action",
    "foreachPartition": "runs a Spark action",
    "save": "writes data",
}
# the monthly stages: a module of one never imports another (``pipelines/<stage>.py`` or a package)
STAGES = ("ingest", "build_features", "train", "score", "match_offers", "evaluate", "uplift", "daily")
# (stage, stage it may import): the daily stage checks and quarantines its deliveries with the monthly
# ingest's own functions rather than a copy of them
REUSES = {("daily", "ingest")}
# modules that run stages in order, and so import them
ORCHESTRATORS = {"pipelines/monthly.py", "pipelines/closed_loop.py"}
PURE_FILES = sorted(p for folder in ("features", "models") for p in (ROOT / folder).rglob("*.py"))
CORE_FILES = sorted((ROOT / "pipelines" / "core").rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            # ``from pyarrow import parquet`` is the module pyarrow.parquet: every imported name is checked
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _allowed(module: str) -> bool:
    if module in PURE_IMPORTS or module.startswith(PURE_PREFIXES):
        return True
    parent = module.rsplit(".", 1)[0]
    # ``from pyspark.sql import functions``: the name is a member of an allowed module, unless it is a
    # module that is itself forbidden (pyarrow.parquet, pyspark.sql.session)
    return parent in PURE_IMPORTS and module not in FORBIDDEN_MODULES


FORBIDDEN_MODULES = {
    "pyarrow.parquet",
    "pyarrow.fs",
    "pyarrow.csv",
    "pyarrow.dataset",
    "pyspark.sql.session",
    "pyspark.sql.SparkSession",
}


def _io_calls(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        target = (
            node.func if isinstance(node, ast.Call) else node if isinstance(node, ast.Attribute) else None
        )
        if target is None:
            continue
        name = (
            target.id
            if isinstance(target, ast.Name)
            else target.attr
            if isinstance(target, ast.Attribute)
            else ""
        )
        if isinstance(node, ast.Attribute) and name not in ("read", "write", "builder"):
            continue  # attributes count when accessed (df.write.parquet), other names only when called
        if name in IO_CALLS:
            out.append((node.lineno, f"{name}: {IO_CALLS[name]}"))
        elif name in SPARK_ACTIONS and isinstance(node, ast.Call) and isinstance(target, ast.Attribute):
            out.append((node.lineno, f"{name}: {SPARK_ACTIONS[name]}"))
        elif (  # time.time(), not datetime.time()
            name == "time"
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "time"
        ):
            out.append((node.lineno, "time: reads the clock"))
    return out


def violations(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(root)
    exempt = DEFAULTS_READER[1] if str(rel) == DEFAULTS_READER[0] else set()
    found = [
        f"{rel}:{line}: imports {mod}" for line, mod in _imports(tree) if not (_allowed(mod) or mod in exempt)
    ]
    found += [f"{rel}:{line}: {why}" for line, why in _io_calls(tree)]
    return sorted(set(found))


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_do_no_io(path):
    assert violations(path) == []


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_a_stage(path):
    tree = ast.parse(path.read_text())
    stages = [
        f"{line}: {mod}"
        for line, mod in _imports(tree)
        if mod.startswith("pipelines") and not mod.startswith("pipelines.core") and mod != "pipelines"
    ]
    assert stages == []


def _stage_of(module: str) -> str | None:
    """The stage a dotted module belongs to (``pipelines.score`` -> ``score``), or None."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "pipelines" and parts[1] in STAGES:
        return parts[1]
    return None


def stage_imports(path: Path, root: Path = ROOT) -> list[str]:
    """The imports of another stage in ``path`` (a module under ``pipelines/``, not an orchestrator)."""
    rel = path.relative_to(root)
    if rel.as_posix() in ORCHESTRATORS:
        return []
    own = _stage_of(".".join(rel.with_suffix("").parts))
    found = []
    for line, mod in _imports(ast.parse(path.read_text(), str(path))):
        stage = _stage_of(mod)
        if stage is not None and stage != own and (own, stage) not in REUSES:
            found.append(f"{rel}:{line}: imports the stage {mod}")
    return sorted(set(found))


STAGE_FILES = sorted(
    p for p in (ROOT / "pipelines").rglob("*.py") if "core" not in p.relative_to(ROOT / "pipelines").parts[:1]
)


def test_the_stages_and_orchestrators_named_here_exist():
    for stage in STAGES:
        assert (ROOT / "pipelines" / f"{stage}.py").exists() or (ROOT / "pipelines" / stage).is_dir(), stage
    for orchestrator in ORCHESTRATORS:
        assert (ROOT / orchestrator).exists(), orchestrator


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_stage_imports_another(path):
    assert stage_imports(path) == []


def test_the_stage_scan_finds_a_stage_importing_another(tmp_path):
    (tmp_path / "pipelines" / "score").mkdir(parents=True)
    (tmp_path / "pipelines" / "core").mkdir()
    code = (
        "from pipelines.train import labelled_months\n"  # 1: another stage
        "import pipelines.score.stage\n"  # 2: its own stage (when the module is score's)
        "from pipelines.core.tables import PERFORMANCE_SCHEMA\n"  # 3: core, fine
        "def f():\n"
        "    from pipelines.match_offers import MatchReport\n"  # 5: a lazy import counts too
        "from pipelines.sample_data.writer import generate\n"  # 6: not a stage
    )
    evaluate = tmp_path / "pipelines" / "evaluate.py"
    evaluate.write_text(code)
    lines = {int(v.split(":")[1]) for v in stage_imports(evaluate, tmp_path)}
    assert lines == {1, 2, 5}
    inside = tmp_path / "pipelines" / "score" / "stage.py"  # a module of the score package
    inside.write_text(code)
    assert {int(v.split(":")[1]) for v in stage_imports(inside, tmp_path)} == {1, 5}
    monthly = tmp_path / "pipelines" / "monthly.py"  # an orchestrator
    monthly.write_text(code)
    assert stage_imports(monthly, tmp_path) == []


def test_jobs_are_front_doors():
    """A job imports only pipelines (and the standard library): the work lives in a stage."""
    for path in sorted((ROOT / "jobs").glob("*.py")):
        mods = {m.split(".")[0] for _, m in _imports(ast.parse(path.read_text()))}
        assert mods <= {"__future__", "sys", "pathlib", "pipelines", "argparse"}, (path.name, mods)


def test_the_scan_finds_each_kind_of_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import deltalake\n"
        "from deltalake import DeltaTable\n"
        "import pyarrow.parquet as pq\n"
        "from pyarrow import parquet\n"
        "from pipelines.core.lake import Lake\n"
        "import mlflow\n"
        "from pyspark.sql import SparkSession\n"
        "df.write.parquet('x')\n"
        "spark.table('features_monthly')\n"
        "spark.read.parquet('x')\n"
        "datetime.now()\n"
        "open('f')\n"
        "time.time()\n"
        "dt.time(0, 0)\n"
        "import numpy as np\n"
        "from pyspark.sql import functions as F\n"
        "rows = df.collect()\n"
        "frame = df.toPandas()\n"
        "df.show()\n"
        "df.foreach(print)\n"
        "np.save('x', a)\n"
        "df.groupBy('a').agg(F.count('*'))\n"
        "F.collect_list('a')\n"
    )
    found = violations(bad, tmp_path)
    text = "\n".join(found)
    needles = ("deltalake", "pyarrow.parquet", "pipelines.core.lake", "mlflow", "write:", "table:", "read:")
    for needle in (*needles, "now:", "open:", "time: reads", "pyspark.sql.SparkSession"):
        assert needle in text, needle
    for needle in ("collect:", "toPandas:", "show:", "foreach:", "save:"):
        assert needle in text, needle
    assert "numpy" not in text and "functions" not in text
    flagged = {int(v.split(":")[1]) for v in found}
    # not dt.time(0, 0), numpy, pyspark functions, an aggregation or collect_list (a transformation)
    assert flagged == {*range(1, 14), *range(17, 22)}, found
