import json

import pytest

from pipelines.core.manifest import recorded_run


def test_runs_are_recorded_on_success_and_failure(lake):
    with recorded_run(lake, "ingest", "2024-01") as run:
        run.row_counts["cdr"] = 42
        run.input_versions["landing"] = None
    with pytest.raises(RuntimeError, match="broken"), recorded_run(lake, "ingest", "2024-02"):
        raise RuntimeError("broken file")
    got = {r.month: r for r in lake.read("pipeline_runs").collect()}
    assert got["2024-01"].status == "success"
    assert json.loads(got["2024-01"].row_counts) == {"cdr": 42}
    assert got["2024-01"].config_hash == lake.cfg.config_hash()
    assert got["2024-02"].status == "failed"
    assert got["2024-02"].error == "RuntimeError: broken file"
    assert got["2024-02"].ended_at >= got["2024-02"].started_at
