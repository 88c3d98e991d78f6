"""The sample-data generator: contract, determinism, churn behaviour, late/duplicate records, faults."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from features import contract as C
from features.calendar import add_months
from pipelines.sample_data.writer import GenerateOptions, _ids, generate, read_faults, read_manifest
from tests.conftest import GEN_MONTHS


def read_source(root: Path, source: str, month: str, with_file: bool = False) -> pd.DataFrame:
    frames = []
    for path in sorted((root / source / f"month={month}").iterdir()):
        if path.name.startswith("_") or path.suffix == ".xlsx" or path.name == "part-late-fix.csv":
            continue
        if path.name.endswith(".parquet"):
            df = pd.read_parquet(path).astype(str)
        else:
            df = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(C.columns(source), "string"), strings_can_be_null=True
                ),
            ).to_pandas()
        df["_file"] = path.name
        df["_row"] = np.arange(1, len(df) + 1)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    return out if with_file else out.drop(columns=["_file", "_row"])


def clean(df: pd.DataFrame, faults: list[dict], source: str, month: str) -> pd.DataFrame:
    bad = {(f["file"], f["row"]) for f in faults if f["source"] == source and f["month"] == month}
    keep = [(f, r) not in bad for f, r in zip(df["_file"], df["_row"], strict=True)]
    return df[keep]


def test_layout_columns_and_success_markers(landing: Path):
    for source in C.SOURCES:
        for month in GEN_MONTHS:
            folder = landing / source / f"month={month}"
            if source == "campaign_outcomes" and not folder.exists():
                continue
            assert (folder / "_SUCCESS").exists(), folder
            data = [p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz", ".parquet"))]
            assert data, folder
            for path in data:
                if path.name == "part-late-fix.csv":
                    continue
                opener = gzip.open if path.name.endswith(".gz") else open
                with opener(path, "rt") as f:
                    header = [h.strip('"') for h in f.readline().strip().split(",")]
                assert set(C.columns(source)) <= set(header), (path, set(C.columns(source)) - set(header))
    assert (landing / "campaign_outcomes" / "month=2024-04").exists()


def test_codes_and_formats_follow_the_contract(landing: Path):
    faults = read_faults(landing)
    month = "2024-03"
    cdr = clean(read_source(landing, "cdr", month, True), faults, "cdr", month)
    assert set(cdr["event_type"]) == {"voice", "sms", "data"}
    assert set(cdr["direction"]) == {"out", "in"}
    assert set(cdr.loc[cdr.event_type == "data", "direction"]) == {"out"}
    assert set(cdr["roaming"]) == {"true", "false"}
    assert cdr["event_ts"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
    assert (cdr.loc[cdr.event_type != "data", "volume_kb"] == "0").all()
    assert (cdr.loc[cdr.event_type == "sms", "duration_s"] == "0").all()
    own = cdr[cdr.other_party_operator == "own"]["other_party"]
    assert own.str.fullmatch(r"[0-9a-f]{64}").all()
    assert cdr.loc[cdr.event_type == "data", "other_party"].isna().all()
    assert cdr["record_id"].str.fullmatch(r"R\d{12}").all()
    roam = cdr[cdr.roaming == "true"]
    assert len(roam) > 0 and roam["roaming_country"].notna().all()
    subs = clean(read_source(landing, "subscriptions", month, True), faults, "subscriptions", month)
    assert subs["subscriber_id"].is_unique
    assert subs["subscriber_id"].str.fullmatch(r"S\d{9}").all()
    assert subs["household_id"].dropna().str.fullmatch(r"H\d{9}").all() and subs["household_id"].isna().any()
    assert (subs["snapshot_date"] == "2024-03-31").all()
    deact = subs[subs.status == "deactivated"]
    assert deact["deactivation_date"].str.startswith("2024-03").all()
    assert set(deact["deactivation_reason"]) <= set(C.DEACTIVATION_REASONS)
    assert deact.loc[deact.deactivation_reason == "port_out", "port_out_operator"].notna().all()
    assert subs.loc[subs.status == "active", "deactivation_date"].isna().all()
    bills = clean(read_source(landing, "billing", month, True), faults, "billing", month)
    assert (bills["bill_month"] == month).all()
    raw_subs = read_source(landing, "subscriptions", month)
    assert set(bills["subscriber_id"].dropna()) <= set(raw_subs["subscriber_id"])
    assert len(bills) > 0.95 * len(raw_subs)


def test_ids_are_fixed_width_and_refuse_to_overflow():
    ids = _ids("S", np.array([-1, 3, 999_999_999]))
    assert ids.to_pylist() == [None, "S000000003", "S999999999"]
    assert _ids("R", np.array([7]), 12).to_pylist() == ["R000000000007"]
    with pytest.raises(ValueError, match="more than 9 digits"):
        _ids("S", np.array([10**9]))


def test_deterministic_for_a_seed(tmp_path: Path):
    opts = GenerateOptions(months=("2024-01", "2024-02"), subscribers=200, seed=5, bad_rows=0.01)
    generate(tmp_path / "a", opts)
    generate(tmp_path / "b", opts)
    for source in ("subscriptions", "cdr", "billing", "care"):
        for month in opts.months:
            a = read_source(tmp_path / "a", source, month)
            b = read_source(tmp_path / "b", source, month)
            pd.testing.assert_frame_equal(a, b)
    assert read_faults(tmp_path / "a") == read_faults(tmp_path / "b")
    other = read_source(
        tmp_path / "c"
        if generate(tmp_path / "c", GenerateOptions(**{**opts.__dict__, "seed": 6}))
        else tmp_path,
        "cdr",
        "2024-01",
    )
    assert len(other) != len(read_source(tmp_path / "a", "cdr", "2024-01"))


def _tenure_months(subs: pd.DataFrame, month: str) -> pd.Series:
    act = pd.to_datetime(subs["activation_date"], errors="coerce", format="%Y-%m-%d")
    start = pd.Timestamp(month + "-01")
    return (start.year - act.dt.year) * 12 + (start.month - act.dt.month)


def test_churn_rates_by_plan_type_and_cohort(landing: Path):
    rows = []
    for month in GEN_MONTHS[1:]:
        subs = read_source(landing, "subscriptions", month)
        prev = set(read_source(landing, "subscriptions", add_months(month, -1))["subscriber_id"])
        base = subs[subs.subscriber_id.isin(prev)].copy()  # active at the start of the month
        base["churn"] = base.status == "deactivated"
        base["tenure"] = _tenure_months(base, month)
        rows.append(base)
    base = pd.concat(rows)
    rates = base.groupby("plan_type")["churn"].mean()
    assert 0.03 <= rates["prepaid"] <= 0.055, rates
    assert 0.01 <= rates["postpaid"] <= 0.022, rates
    by_cohort = base.groupby(
        pd.cut(base.tenure, [-1, 5, 11, 10_000], labels=["new", "early", "est"]), observed=True
    )
    cohort = by_cohort["churn"].mean()
    assert cohort["new"] > cohort["est"] * 1.5, cohort
    reasons = base[base.churn].merge(base[["subscriber_id"]].drop_duplicates(), on="subscriber_id")
    shares = reasons.deactivation_reason.value_counts(normalize=True)
    assert shares["port_out"] > shares["voluntary"] > shares["non_payment"] > 0
    assert shares.get("fraud", 0) + shares.get("deceased", 0) < 0.1


def test_late_and_duplicate_cdrs(landing: Path):
    manifest = read_manifest(landing)
    month = "2024-04"
    cdr = read_source(landing, "cdr", month)
    ts = pd.to_datetime(cdr["event_ts"], errors="coerce")
    late = cdr[
        (ts < pd.Timestamp(month + "-01")) & (ts >= pd.Timestamp(month + "-01") - pd.Timedelta(days=7))
    ]
    info = manifest["source_months"][f"cdr/{month}"]
    # late records of March delivered in April's folder (plus duplicates of March records)
    assert len(late) >= info["late_in"] > 0
    assert len(late) <= info["late_in"] + info["duplicates_from_previous"] + info["faults"]
    dup_same = cdr["record_id"].duplicated().sum()
    assert dup_same == info["duplicates_same_month"] > 0
    march = set(read_source(landing, "cdr", "2024-03")["record_id"])
    assert len(march & set(cdr["record_id"])) == info["duplicates_from_previous"] > 0


def test_msisdn_recycling(landing: Path):
    subs = pd.concat(read_source(landing, "subscriptions", m) for m in GEN_MONTHS)
    owners = subs.groupby("msisdn")["subscriber_id"].nunique()
    recycled = owners[owners > 1].index
    assert len(recycled) > 0
    for number in recycled[:20]:
        lines = subs[subs.msisdn == number].sort_values("snapshot_date")
        first_owner = lines.iloc[0].subscriber_id
        ended = lines[(lines.subscriber_id == first_owner) & lines.deactivation_date.notna()]
        later = lines[lines.subscriber_id != first_owner].iloc[0]
        # the new owner got the number only after the old line was deactivated and the quarantine passed
        assert len(ended) == 1
        gap = pd.Timestamp(later.activation_date) - pd.Timestamp(ended.iloc[0].deactivation_date)
        assert gap > pd.Timedelta(days=60)


def test_injected_faults_match_the_manifest(landing: Path):
    faults = read_faults(landing)
    manifest = read_manifest(landing)
    assert {f["source"] for f in faults} >= {"cdr", "billing", "care", "subscriptions"}
    for key, info in manifest["source_months"].items():
        source, month = key.split("/")
        assert info["faults"] == sum(1 for f in faults if f["source"] == source and f["month"] == month)
    month = "2024-05"
    cdr = read_source(landing, "cdr", month, True).set_index(["_file", "_row"])
    for fault in (f for f in faults if f["source"] == "cdr" and f["month"] == month):
        row = cdr.loc[(fault["file"], fault["row"])]
        reason = fault["reason"]
        if reason == "invalid_value:event_type":
            assert row.event_type == "video"
        elif reason == "missing_required:event_ts":
            assert pd.isna(row.event_ts)
        elif reason == "unknown_msisdn":
            assert row.msisdn == "39990000001"
        elif reason == "future_event":
            assert row.event_ts.startswith(add_months(month, 2))
    file_faults = manifest["file_faults"]
    assert {(f["source"], f["fault"]) for f in file_faults} == {
        ("billing", "missing_columns"),
        ("care", "unreadable_file"),
    }
    assert (landing / "billing" / f"month={GEN_MONTHS[-1]}" / "part-late-fix.csv").exists()


def _monthly_aggregates(root: Path, month: str) -> pd.DataFrame:
    subs = read_source(root, "subscriptions", month)
    subs = subs[subs.status != "deactivated"]
    cdr = read_source(root, "cdr", month)
    cdr = cdr[pd.to_datetime(cdr.event_ts, errors="coerce").dt.strftime("%Y-%m") == month]
    cdr = cdr.drop_duplicates("record_id")
    cdr["day"] = cdr.event_ts.str[:10]
    usage = cdr.groupby("msisdn").agg(events=("record_id", "size"), days=("day", "nunique"))
    out = subs.merge(usage, left_on="msisdn", right_index=True, how="left").fillna({"events": 0, "days": 0})
    care = read_source(root, "care", month)
    care = care[care.category != "port_out_request"]
    out["care"] = out.subscriber_id.map(care.groupby("subscriber_id").size()).fillna(0)
    bills = read_source(root, "billing", month).set_index("subscriber_id")
    out["overdue"] = pd.to_numeric(out.subscriber_id.map(bills["overdue_days"]), errors="coerce").fillna(0)
    out["prepaid"] = (out.plan_type == "prepaid").astype(int)
    out["tenure"] = _tenure_months(out, month)
    end = pd.to_datetime(out.contract_end_date, errors="coerce")
    out["to_end"] = ((end - pd.Timestamp(month + "-01")).dt.days).fillna(9999)
    return out.set_index("subscriber_id")


def test_signal_is_real_but_not_trivial(landing: Path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def dataset(month: str) -> tuple[pd.DataFrame, pd.Series]:
        now = _monthly_aggregates(landing, month)
        prev = _monthly_aggregates(landing, add_months(month, -1))
        x = now[["events", "days", "care", "overdue", "prepaid", "tenure", "to_end"]].copy()
        x["trend"] = now["events"] / (prev["events"].reindex(now.index).fillna(now["events"]) + 1)
        window = read_source(landing, "subscriptions", add_months(month, 2))
        churned = window[
            (window.status == "deactivated") & window.deactivation_reason.isin(["port_out", "voluntary"])
        ].subscriber_id
        return x, x.index.isin(set(churned))

    x_train, y_train = zip(*(dataset(m) for m in ("2024-02", "2024-03")), strict=True)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=0)
    model.fit(pd.concat(x_train), np.concatenate(y_train))
    x_test, y_test = dataset("2024-05")
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.66 <= auc <= 0.93, auc


@pytest.mark.parametrize("fmt", ["parquet"])
def test_parquet_option_has_natural_types(tmp_path: Path, fmt: str):
    import pyarrow.parquet as pq

    generate(tmp_path, GenerateOptions(months=("2024-01",), subscribers=100, seed=1, fmt=fmt, bad_rows=0.01))
    files = sorted((tmp_path / "cdr" / "month=2024-01").glob("*.parquet"))
    schema = pq.read_schema(files[0])
    assert str(schema.field("event_ts").type) == "timestamp[us]"
    assert str(schema.field("roaming").type) == "bool"
    assert str(schema.field("duration_s").type) == "int32"
    assert all(f["reason"].split(":")[0] != "unparseable" for f in read_faults(tmp_path))
