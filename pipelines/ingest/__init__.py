"""Stage: ingest one month of landing extracts into validated silver Delta tables.

One concern per module, in the order a delivery goes through them:

- ``files``: list a source-month's landing folder and check every file before anything is read;
- ``read``: read the files into the contract's text columns, locate and describe rejected rows;
- ``subscribers``: resolve CDR numbers to the subscriber who held them at the event's time;
- ``dedupe``: a record delivered more than once (in one delivery or across deliveries) is loaded once;
- ``quality``: load statistics, the gates and the ``data_quality`` rows;
- ``spec``: the per-source rules as data and the gates as a pure function;
- ``stage``: ``ingest_month``, which runs them per source and writes the tables.
"""

from pipelines.ingest.files import (
    IncompleteDeliveryError,
    LandingFile,
    MissingDeliveryError,
    UnreadableFileError,
    delivery_text_mb,
    list_delivery,
)
from pipelines.ingest.quality import DQ_SCHEMA, GateFailedError, SourceReport
from pipelines.ingest.read import read_delivery
from pipelines.ingest.spec import INGEST_ORDER, SOURCE_SPECS, LoadStats, SourceSpec
from pipelines.ingest.stage import ingest_month, ingest_source

__all__ = [
    "DQ_SCHEMA",
    "INGEST_ORDER",
    "SOURCE_SPECS",
    "GateFailedError",
    "IncompleteDeliveryError",
    "LandingFile",
    "LoadStats",
    "MissingDeliveryError",
    "SourceReport",
    "SourceSpec",
    "UnreadableFileError",
    "delivery_text_mb",
    "ingest_month",
    "ingest_source",
    "list_delivery",
    "read_delivery",
]
