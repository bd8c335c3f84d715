"""Compare a source and a target database: their data (`compare_data`) and their schema
(`compare_schema`), in the same scope as the migration.

The modules, one concern each:

    sqltext         SQL text of the data comparison: the row hash, fingerprints (pure)
    side            reading one side on one shared snapshot, from worker threads
    data            compare_data: table fingerprints, sequences, large objects
    schema          compare_schema: object sets and definitions
    results         the results, their one-line problems and their JSON

The catalog side (the queries per object type, SchemaObject, FilterScope: which objects
the filters keep) lives in `pgferry.catalog.definitions` and `pgferry.catalog.objects`.
This package re-exports the public names, and the helpers `pgferry verify` shares.
"""

from pgferry.checks.compare.data import (
    compare_data,
    compare_large_objects,
    compare_sequences,
    sequence_behind,
)
from pgferry.checks.compare.results import (
    DataComparison,
    LargeObjectResult,
    ObjectKindComparison,
    SchemaComparison,
    SequenceResult,
    TableResult,
)
from pgferry.checks.compare.schema import compare_schema, diff_objects
from pgferry.checks.compare.side import (
    LARGE_OBJECT_BATCH,
    LARGE_OBJECT_CHUNK,
    LOCK_BUDGET,
    SEQUENCE_BATCH,
    Side,
    error_text,
)
from pgferry.checks.compare.sqltext import (
    fingerprint_query,
    sequence_query,
)

__all__ = [
    "LARGE_OBJECT_BATCH",
    "LARGE_OBJECT_CHUNK",
    "LOCK_BUDGET",
    "SEQUENCE_BATCH",
    "DataComparison",
    "LargeObjectResult",
    "ObjectKindComparison",
    "SchemaComparison",
    "SequenceResult",
    "TableResult",
    "Side",
    "compare_large_objects",
    "compare_sequences",
    "error_text",
    "compare_data",
    "compare_schema",
    "diff_objects",
    "fingerprint_query",
    "sequence_behind",
    "sequence_query",
]
