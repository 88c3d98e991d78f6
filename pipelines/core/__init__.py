"""Shared plumbing of every stage: config, Spark session, Delta layer, lake, runner, run manifest, SQL.

Nothing here imports a stage (``pipelines.<stage>``); the MLflow helpers land here too.
"""
