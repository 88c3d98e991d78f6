"""Personal data: which columns hold phone numbers, their masking, their keyed pseudonyms, and the
redaction of secrets from the logged config.

Phone numbers (the contract's ``msisdn`` and the CDR's ``other_party``) are the personal identifiers the
lake receives. They are kept where the pipeline needs them (silver ``subscriptions`` and ``cdr``, and the
assigned rows of ``offer_assignments`` the campaign system calls) and masked everywhere a person reads
them (quarantine raw values, log lines, gate messages). ``privacy.pseudonymise`` replaces them at ingest
by keyed hashes (HMAC-SHA256 with a key from the environment), so the lake holds no number at all.

The pseudonyms keep the one relation the features use: an own-network ``other_party`` is the SHA-256 of
that subscriber's ``msisdn`` (``features.social``), so

- ``msisdn`` becomes ``HMAC(key, sha256_hex(msisdn))`` (hex), and
- ``other_party`` (already ``sha256_hex(number)``) becomes ``sha256_hex(HMAC(key, other_party))``,

and the SHA-256 of a pseudonymised ``msisdn`` still equals its pseudonymised ``other_party``. Without the
key neither can be turned back into a number by trying every number (a plain hash can).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# the contract's columns that carry a phone number (or its plain hash), per landing source
PHONE_COLUMNS: dict[str, tuple[str, ...]] = {"subscriptions": ("msisdn",), "cdr": ("msisdn", "other_party")}
# a masked number keeps its last MASK_KEEP characters, and only when it has at least MASK_MIN_LENGTH
MASK_KEEP = 2
MASK_MIN_LENGTH = 6
REDACTED = "***"
# a config key is secret when one of its words (split at . _ - and case changes) is one of these
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "key", "credential", "credentials"})
# ... unless it names an environment variable (``privacy.key_env``: the variable's name, not its value)
NOT_SECRET_SUFFIXES = ("_env",)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
_WORDS = re.compile(r"[._\-\s]+|(?<=[a-z0-9])(?=[A-Z])")


class PseudonymKeyError(ValueError):
    """``privacy.pseudonymise`` is on but its key is missing from the environment (or too short)."""


MIN_KEY_BYTES = 16


def mask_number(value: str | None) -> str | None:
    """``'44700900123'`` -> ``'*********23'``: enough to tell two numbers apart in a report, not to call
    one. Short values are masked whole."""
    if value is None:
        return None
    if len(value) < MASK_MIN_LENGTH:
        return "*" * len(value)
    return "*" * (len(value) - MASK_KEEP) + value[-MASK_KEEP:]


def mask_column(col: Column) -> Column:
    """:func:`mask_number` as a Spark expression (null stays null)."""
    n = F.length(col)
    return (
        F.when(col.isNull(), F.lit(None).cast("string"))
        .when(n < MASK_MIN_LENGTH, F.repeat(F.lit("*"), n))
        .otherwise(F.concat(F.repeat(F.lit("*"), n - MASK_KEEP), F.substring(col, -MASK_KEEP, MASK_KEEP)))
    )


def with_masked_fields(struct: Column, fields: tuple[str, ...]) -> Column:
    """A struct column with ``fields`` masked (a null struct stays null)."""
    for name in fields:
        struct = struct.withField(name, mask_column(struct.getField(name)))
    return struct


class PseudonymKey:
    """The pseudonymisation key: bytes that never show in a repr, a plan or a log line.

    It travels to the executors inside the pickled UDF (Spark prints a UDF by name only)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "PseudonymKey(***)"

    def digest(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()


def pseudonym_key(privacy: Any, environ: Mapping[str, str] | None = None) -> PseudonymKey | None:
    """The key named by ``privacy.key_env`` when ``privacy.pseudonymise`` is on (else None).

    A missing, empty or short key is an error at job start: a run must never write clear numbers into a
    lake that holds pseudonyms (the two would no longer join)."""
    if not privacy.pseudonymise:
        return None
    env = os.environ if environ is None else environ
    value = env.get(privacy.key_env, "")
    if not value:
        raise PseudonymKeyError(
            f"privacy.pseudonymise is on but the environment variable {privacy.key_env} (privacy.key_env) "
            "is not set: set it to the pseudonymisation key (the same key for every run of this lake)"
        )
    if len(value.encode()) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonymisation key in {privacy.key_env} is shorter than {MIN_KEY_BYTES} bytes"
        )
    return PseudonymKey(value.encode())


def pseudonymise_msisdn(value: str, key: PseudonymKey) -> str:
    """``HMAC(key, sha256_hex(msisdn))``: its SHA-256 equals the pseudonymised ``other_party`` of it."""
    return key.digest(hashlib.sha256(value.encode()).hexdigest())


def pseudonymise_other_party(value: str, key: PseudonymKey) -> str:
    """``sha256_hex(HMAC(key, other_party))``, ``other_party`` being the contract's SHA-256 of a number."""
    return hashlib.sha256(key.digest(value).encode()).hexdigest()


PSEUDONYMISERS: dict[str, Callable[[str, PseudonymKey], str]] = {
    "msisdn": pseudonymise_msisdn,
    "other_party": pseudonymise_other_party,
}


def _pseudonym_udf(column: str, key: PseudonymKey) -> Callable[[Column], Column]:
    one = PSEUDONYMISERS[column]

    def pseudonyms(values: pd.Series) -> pd.Series:
        # a number repeats over a month's CDRs: each distinct value hashed once per batch
        distinct = {v: one(v, key) for v in values.dropna().unique() if v.strip()}
        return values.map(lambda v: distinct.get(v, v) if isinstance(v, str) else None)

    pseudonyms.__name__ = f"pseudonymise_{column}"
    return F.pandas_udf(pseudonyms, T.StringType())  # type: ignore[call-overload]


def pseudonymise_rows(df: DataFrame, source: str, key: PseudonymKey, *, raw_col: str) -> DataFrame:
    """The phone columns of ``source`` replaced by their pseudonyms, typed and in the raw struct alike
    (quarantine then holds pseudonyms too, and damaged snapshot rows still match their numbers)."""
    columns = PHONE_COLUMNS.get(source, ())
    if not columns:
        return df
    udfs = {c: _pseudonym_udf(c, key) for c in columns}
    raw = F.col(raw_col)
    for c in columns:
        raw = raw.withField(c, udfs[c](raw.getField(c)))
    return df.withColumns({**{c: udfs[c](F.col(c)) for c in columns}, raw_col: raw})


def _is_secret_key(name: str) -> bool:
    if name.lower().endswith(NOT_SECRET_SUFFIXES):
        return False
    return any(word.lower() in SECRET_WORDS for word in _WORDS.split(name) if word)


def redact_text(text: str) -> str:
    """User and password of every URI in ``text`` (``scheme://user:pw@host``) replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def redact(value: Any, name: str = "") -> Any:
    """A config mapping with secrets replaced by ``***``: the values of keys named like a secret
    (password, secret, token, key: Spark settings such as ``spark.hadoop.fs.s3a.secret.key`` too) and
    the credentials of URIs. The mapping given is not changed (the config hash is of the real values)."""
    if name and _is_secret_key(name) and value not in (None, ""):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def process_umask(file_mode: str, dir_mode: str) -> int:
    """The umask under which new files get ``file_mode`` and new folders ``dir_mode`` (octal text).

    Files are created 0666 and folders 0777 before the umask (Python, the JVM and delta-rs alike), so one
    umask gives both only when they deny the same bits: ``0640``/``0750`` (umask ``027``) do."""
    f, d = int(file_mode, 8), int(dir_mode, 8)
    mask = (0o666 & ~f) | (0o777 & ~d)
    if 0o666 & ~mask != f or 0o777 & ~mask != d:
        raise ValueError(
            f"privacy.file_mode {file_mode} and privacy.dir_mode {dir_mode} cannot both hold under one "
            "umask: a folder mode must be the file mode plus the execute bit of each class that may read"
        )
    return mask
