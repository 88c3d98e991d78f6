"""Masking, pseudonyms, the redacted config and the file modes (pipelines.core.privacy, the runner)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from pyspark.sql import functions as F

from pipelines.core.config import ConfigError, effective_config_yaml, load_config
from pipelines.core.privacy import (
    PseudonymKey,
    PseudonymKeyError,
    mask_column,
    mask_number,
    process_umask,
    pseudonym_key,
    pseudonymise_msisdn,
    pseudonymise_other_party,
    pseudonymise_rows,
    redact,
)
from tests.conftest import ROOT, TEST_CONF

KEY = "0123456789abcdef-test-key"


# ---------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize(
    ("value", "masked"),
    [("491700000123", "**********23"), ("123456", "****56"), ("12345", "*****"), ("", ""), (None, None)],
)
def test_mask_number_keeps_the_last_two_digits_of_a_long_enough_value(value, masked):
    assert mask_number(value) == masked


def test_mask_column_is_mask_number_in_spark(spark):
    values = ["491700000123", "123456", "12345", "", None]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r.m for r in df.select(mask_column(F.col("v")).alias("m")).collect()]
    assert got == [mask_number(v) for v in values]


# ---------------------------------------------------------------------------------------------- pseudonyms
def test_the_key_comes_from_the_named_environment_variable_only():
    cfg = load_config([TEST_CONF], ["privacy.pseudonymise=true", "privacy.key_env=MY_KEY"])
    assert pseudonym_key(load_config([TEST_CONF]).privacy, {}) is None  # off: no key needed
    with pytest.raises(PseudonymKeyError, match="MY_KEY"):
        pseudonym_key(cfg.privacy, {})
    with pytest.raises(PseudonymKeyError, match="shorter than 16 bytes"):
        pseudonym_key(cfg.privacy, {"MY_KEY": "short"})
    key = pseudonym_key(cfg.privacy, {"MY_KEY": KEY, "CHURNLAKE_PSEUDONYM_KEY": "another-key-of-16-bytes"})
    assert key is not None and KEY not in repr(key)
    assert key.digest("x") == hmac.new(KEY.encode(), b"x", hashlib.sha256).hexdigest()  # MY_KEY's, no other


def test_a_missing_key_stops_a_job_at_start(tmp_path, monkeypatch, capsys):
    from jobs.ingest import main as ingest_job

    monkeypatch.delenv("CHURNLAKE_PSEUDONYM_KEY", raising=False)
    args = ["--month", "2024-01", "--conf", str(TEST_CONF), "--set", f"lake.root={tmp_path / 'lake'}"]
    umask = os.umask(0o022)
    try:
        status = ingest_job([*args, "--set", "privacy.pseudonymise=true"])
    finally:
        os.umask(umask)  # the job set this process's umask
    assert status == 2
    assert "CHURNLAKE_PSEUDONYM_KEY" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # nothing written, not even a log


def test_pseudonyms_are_keyed_and_keep_the_own_network_relation():
    key = PseudonymKey(KEY.encode())
    number = "491700000123"
    plain_other_party = hashlib.sha256(number.encode()).hexdigest()  # the contract's other_party
    p = pseudonymise_msisdn(number, key)
    assert p == hmac.new(KEY.encode(), plain_other_party.encode(), hashlib.sha256).hexdigest()
    # features.social joins sha2(msisdn) to other_party: still true of the pseudonyms
    assert hashlib.sha256(p.encode()).hexdigest() == pseudonymise_other_party(plain_other_party, key)
    other = PseudonymKey(b"another-key-of-16-bytes")
    assert pseudonymise_msisdn(number, other) != p


def test_pseudonymise_rows_in_spark_matches_python_and_hides_the_key(spark):
    key = PseudonymKey(KEY.encode())
    rows = [
        ("491700000123", "ab" * 32, ("491700000123", "ab" * 32, "x")),
        (None, None, None),
        ("4917", "cd", ("", None, "y")),
    ]
    schema = "msisdn string, other_party string, _raw struct<msisdn:string,other_party:string,other:string>"
    df = spark.createDataFrame(rows, schema)
    out = pseudonymise_rows(df, "cdr", key, raw_col="_raw")
    got = out.collect()
    assert [r.msisdn for r in got] == [
        pseudonymise_msisdn("491700000123", key),
        None,
        pseudonymise_msisdn("4917", key),
    ]
    assert [r.other_party for r in got] == [
        pseudonymise_other_party("ab" * 32, key),
        None,
        pseudonymise_other_party("cd", key),
    ]
    assert (got[0]._raw.msisdn, got[0]._raw.other_party) == (got[0].msisdn, got[0].other_party)
    assert got[0]._raw.other == "x"
    assert got[1]._raw is None
    assert got[2]._raw.msisdn == ""  # a blank raw value stays blank (it was quarantined as missing)
    plan = out._jdf.queryExecution().toString()
    assert KEY not in plan and KEY.encode().hex() not in plan


# ---------------------------------------------------------------------------------------------- redaction
SECRET_SETTINGS = (
    "mlflow.tracking_uri=postgresql://churn:hunter2@db.internal:5432/mlflow",
    "mlflow.registry_uri=https://user:s3cr3t-tok@registry.internal/api",
    "spark.conf.spark.hadoop.fs.s3a.secret.key=AKIASECRETVALUE",
    "spark.conf.spark.hadoop.fs.s3a.access.key=AKIAACCESSVALUE",
    "spark.conf.spark.sql.shuffle.partitions=4",
)


def test_the_logged_config_has_no_secret_and_the_hash_is_of_the_real_config():
    cfg = load_config([TEST_CONF], list(SECRET_SETTINGS))
    before = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]
    text = effective_config_yaml(cfg)
    for secret in ("hunter2", "s3cr3t-tok", "AKIASECRETVALUE", "AKIAACCESSVALUE", "//churn", "//user"):
        assert secret not in text
    logged = yaml.safe_load(text)
    assert logged["mlflow"]["tracking_uri"] == "postgresql://***@db.internal:5432/mlflow"
    assert logged["mlflow"]["registry_uri"] == "https://***@registry.internal/api"
    assert logged["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert logged["spark"]["conf"]["spark.sql.shuffle.partitions"] == "4"
    assert logged["privacy"]["key_env"] == "CHURNLAKE_PSEUDONYM_KEY"  # a variable's name, not a secret
    assert logged["lake"] == cfg.model_dump(mode="json")["lake"]  # the rest as it is
    assert cfg.config_hash() == before
    other = load_config(
        [TEST_CONF], [*SECRET_SETTINGS[1:], "mlflow.tracking_uri=postgresql://churn:pw2@db/mlflow"]
    )
    assert other.config_hash() != cfg.config_hash()


def test_redact_leaves_its_input_alone():
    conf = {"api_token": "t0k", "nested": {"clientSecret": "x", "uri": "s3://a:b@bucket/p", "n": 3}}
    assert redact(conf) == {
        "api_token": "***",
        "nested": {"clientSecret": "***", "uri": "s3://***@bucket/p", "n": 3},
    }
    assert conf["api_token"] == "t0k"


# ---------------------------------------------------------------------------------------------- file modes
def test_one_umask_gives_both_modes():
    assert process_umask("0640", "0750") == 0o027
    assert process_umask("600", "700") == 0o077
    with pytest.raises(ValueError, match="cannot both hold"):
        process_umask("0600", "0755")
    with pytest.raises(ConfigError, match="privacy"):
        load_config([TEST_CONF], ["privacy.file_mode=0600", "privacy.dir_mode=0755"])


def _landing_of_one_line(root):
    from features import contract as C

    folder = root / "subscriptions" / "month=2024-01"
    folder.mkdir(parents=True)
    row = {
        "subscriber_id": "S1",
        "msisdn": "491700000123",
        "customer_id": "C1",
        "segment": "consumer",
        "plan_type": "prepaid",
        "plan_id": "P1",
        "monthly_fee": "10.00",
        "activation_date": "2023-01-05",
        "status": "active",
        "acquisition_channel": "store",
        "region": "north",
        "marketing_consent": "true",
        "snapshot_date": "2024-01-31",
    }
    bad = {**row, "subscriber_id": "S2", "msisdn": "491700000456", "segment": "martian"}
    cols = C.columns("subscriptions")
    lines = [",".join(cols)] + [",".join(r.get(c, "") for c in cols) for r in (row, bad)]
    (folder / "part-0.csv").write_text("\n".join(lines) + "\n")
    (folder / "_SUCCESS").touch()


@pytest.mark.slow
def test_a_job_under_umask_000_writes_0640_files_and_0750_folders(tmp_path):
    """The job sets the umask before its log and its Spark session: the JVM's staged files, the bridge's
    moves, delta-rs commits and the log file all get the configured modes."""
    _landing_of_one_line(tmp_path / "landing")
    lake = tmp_path / "lake"
    cmd = [
        sys.executable,
        str(ROOT / "jobs" / "ingest.py"),
        "--month",
        "2024-01",
        "--sources",
        "subscriptions",
        "--override-gates",  # one bad line in two fails the quarantine-rate gate
        "--conf",
        str(TEST_CONF),
        "--set",
        f"lake.root={lake}",
        "--set",
        f"landing.root={tmp_path / 'landing'}",
    ]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, preexec_fn=lambda: os.umask(0)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = [p for p in lake.rglob("*") if p.is_file()]
    folders = [p for p in lake.rglob("*") if p.is_dir()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".json" for p in files)
    assert any(p.suffix == ".log" for p in files)
    modes = {str(p.relative_to(lake)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [lake, *folders, *files]}
    assert {p: m for p, m in modes.items() if m != "0o640" and (lake / p).is_file()} == {}
    assert {p: m for p, m in modes.items() if m != "0o750" and (lake / p).is_dir()} == {}
    # the quarantined line's number is masked; the silver snapshot keeps it
    from deltalake import DeltaTable

    raw = DeltaTable(str(lake / "quarantine")).to_pyarrow_table().column("raw_values").to_pylist()
    assert [json.loads(r)["msisdn"] for r in raw] == ["**********56"]
    silver = DeltaTable(str(lake / "subscriptions")).to_pyarrow_table().column("msisdn").to_pylist()
    assert silver == ["491700000123"]
