"""The registered model that scores a month: a version named on purpose, or the champion trained by then.

Time: the model serving month M must have been trained as of M or earlier. Without a version the
champion serves when it was; otherwise the newest version ever promoted that was trained by M does, so
rescoring a past month never uses labels that matured after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from models.family import ModelFamily
from pipelines.core.config import Config

log = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """No registered model can serve the month (no champion, an unknown version, or none trained by then)."""


@dataclass
class ResolvedModel:
    """A registered version, the run that logged it, the month it was trained as of and its family."""

    name: str
    version: str
    run_id: str
    trained_as_of: str | None
    family: ModelFamily


def _run_tags(client: Any, run_id: str) -> dict[str, str]:
    try:
        return dict(client.get_run(run_id).data.tags)
    except Exception:  # a version logged outside this pipeline has no run here
        return {}


def resolve_model(cfg: Config, month: str, version: str | None = None) -> ResolvedModel:
    """The model that scores ``month``: ``version`` if given, else the champion trained by ``month``."""
    from mlflow.exceptions import MlflowException

    from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow, load_verified

    client = configure_mlflow(cfg)
    name = cfg.train.registered_model
    if version is not None:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException:
            raise ModelNotFoundError(
                f"{name} has no version {version} in {cfg.mlflow_tracking_uri}"
            ) from None
    else:
        champion = alias_version(name, CHAMPION)
        if champion is None:
            raise ModelNotFoundError(
                f"no {name}@champion in {cfg.mlflow_tracking_uri}: train first (jobs/train.py --month M) "
                "or pass --model-version N"
            )
        mv = client.get_model_version(name, champion)
        trained = _run_tags(client, mv.run_id).get("run_month")
        if trained and trained > month:
            older = []
            for candidate in client.search_model_versions(f"name='{name}'"):
                tags = _run_tags(client, candidate.run_id)
                if tags.get("promoted") == "True" and tags.get("run_month", "9999-99") <= month:
                    older.append(candidate)
            if not older:
                raise ModelNotFoundError(
                    f"{name}@champion (version {mv.version}) was trained as of {trained}, after {month}, and "
                    f"no version trained by {month} was ever champion: pass --model-version N to rescore "
                    "with a later model on purpose"
                )
            mv = max(older, key=lambda v: int(v.version))
            log.info(
                "score %s: champion trained as of %s is later; using version %s", month, trained, mv.version
            )
    family = load_verified(name, str(mv.version)).family  # refused before unpickling if changed
    tags = _run_tags(client, mv.run_id)
    return ResolvedModel(name, str(mv.version), mv.run_id or "", tags.get("run_month"), family)
