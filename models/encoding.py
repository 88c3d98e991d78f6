"""Turn any pandas frame into LightGBM's numeric matrix, with stable category codes (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import MissingColumnsError, SchemaMismatchError


@dataclass(frozen=True)
class FeatureEncoder:
    """The feature list and, for string/categorical columns, their categories in a fixed order.

    Booleans and numbers (decimals included) become floats, nulls become NaN (LightGBM's missing value),
    strings become category codes: the position in ``categories[column]``, learned at fit time; a value
    never seen at fit time is missing, not a new code.
    """

    features: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: Sequence[str]) -> FeatureEncoder:
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise MissingColumnsError(missing, "fit_family")
        categories = {}
        kept = []
        for name in features:
            kind = _kind(frame[name])
            if kind == "date":
                continue  # dates are not features: tenure and months to contract end carry them
            if kind == "category":
                categories[name] = tuple(sorted(frame[name].dropna().astype(str).unique().tolist()))
            elif kind != "number":
                raise SchemaMismatchError(
                    f"fit_family: column {name} has unsupported type {frame[name].dtype}"
                )
            kept.append(name)
        return cls(tuple(kept), categories)

    @property
    def categorical(self) -> list[int]:
        """Positions of the categorical columns in the matrix."""
        return [i for i, c in enumerate(self.features) if c in self.categories]

    def transform(self, frame: pd.DataFrame, *, extra_columns: int = 0) -> np.ndarray:
        """The float matrix of ``frame`` in feature order (columns the frame lacks are an error).

        Column-major (each column is written in one contiguous run; LightGBM and scikit-learn take
        either layout), with ``extra_columns`` NaN columns after the features for the caller to fill.
        """
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise MissingColumnsError(missing, "predict_proba")
        out = np.empty((len(frame), len(self.features) + extra_columns), dtype=np.float64, order="F")
        out[:, len(self.features) :] = np.nan
        for j, name in enumerate(self.features):
            col = frame[name]
            if name in self.categories:
                codes = pd.Categorical(
                    col.astype("string").astype(object), categories=self.categories[name]
                ).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)
            elif pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
                out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
            else:  # object columns from Spark: Python bools, Decimals, None
                values = col.astype(object).where(col.notna(), None)
                out[:, j] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        return out


_NUMBER = {"integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty", "integer-na"}
_CATEGORY = {"string", "categorical", "mixed", "mixed-integer", "bytes"}
_DATE = {"date", "datetime", "datetime64", "timedelta", "timedelta64", "period", "time"}


def _kind(col: pd.Series) -> str:
    """number, category or date, by the values (object columns from Spark hold Python values)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return "category"
    inferred = pd.api.types.infer_dtype(col, skipna=True)
    if inferred in _NUMBER:
        return "number"
    if inferred in _CATEGORY:
        return "category"
    if inferred in _DATE:
        return "date"
    return inferred
