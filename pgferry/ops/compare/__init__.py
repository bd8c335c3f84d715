"""Compare a source and a target database: their data (`compare_data`) and their schema
(`compare_schema`), in the same scope as the migration.

The modules, one concern each:

    sqltext         SQL text of the data comparison and how names are shown (pure)
    schema_queries  the catalog queries per object type, comments and owners (pure)
    scope           SchemaObject and FilterScope: which objects the filters keep
    side            reading one side on one shared snapshot, from worker threads
    data            compare_data: table fingerprints, sequences, large objects
    schema          compare_schema: object sets and definitions
    results         the results, their one-line problems and their JSON

This package re-exports the public names, and the helpers `pgferry verify` shares.
"""

from pgferry.ops.compare.data import (
    compare_data,
    compare_large_objects,
    compare_sequences,
    sequence_behind,
)
from pgferry.ops.compare.results import (
    DataComparison,
    LargeObjectResult,
    ObjectKindComparison,
    SchemaComparison,
    SequenceResult,
    TableResult,
)
from pgferry.ops.compare.schema import compare_schema, diff_objects
from pgferry.ops.compare.schema_queries import DECORATION_QUERIES, SCHEMA_QUERIES
from pgferry.ops.compare.scope import (
    TABLE_LIKE_KINDS,
    FilterScope,
    SchemaObject,
    read_schema_objects,
    scoped_definitions,
)
from pgferry.ops.compare.side import (
    LARGE_OBJECT_BATCH,
    LARGE_OBJECT_CHUNK,
    LOCK_BUDGET,
    SEQUENCE_BATCH,
    Side,
    error_text,
)
from pgferry.ops.compare.sqltext import (
    display_name,
    fingerprint_query,
    not_member,
    sequence_query,
)

__all__ = [
    "DECORATION_QUERIES",
    "LARGE_OBJECT_BATCH",
    "LARGE_OBJECT_CHUNK",
    "LOCK_BUDGET",
    "SCHEMA_QUERIES",
    "SEQUENCE_BATCH",
    "TABLE_LIKE_KINDS",
    "DataComparison",
    "FilterScope",
    "LargeObjectResult",
    "ObjectKindComparison",
    "SchemaComparison",
    "SchemaObject",
    "SequenceResult",
    "TableResult",
    "Side",
    "compare_large_objects",
    "compare_sequences",
    "error_text",
    "not_member",
    "compare_data",
    "compare_schema",
    "diff_objects",
    "display_name",
    "fingerprint_query",
    "read_schema_objects",
    "scoped_definitions",
    "sequence_behind",
    "sequence_query",
]
