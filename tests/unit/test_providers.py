"""Recognising managed services and their starting filter files (ops/providers.py)."""

from __future__ import annotations

import pytest

from pgferry.catalog.filters import parse_filters
from pgferry.catalog.providers import (
    PROVIDERS,
    SELF_HOSTED,
    ProviderMarkers,
    identify_provider,
    provider_filters,
    replication_fix,
    wal_level_fix,
)


@pytest.mark.parametrize(
    ("markers", "expected"),
    [
        (ProviderMarkers.of(settings=["rds.extensions", "rds.force_ssl"]), "rds"),
        (ProviderMarkers.of(roles=["rds_superuser"]), "rds"),
        (
            ProviderMarkers.of(settings=["rds.extensions"], functions=["aurora_version"]),
            "aurora",
        ),
        (ProviderMarkers.of(settings=["apg_plan_mgmt.capture_plan_baselines"]), "aurora"),
        (ProviderMarkers.of(settings=["cloudsql.iam_authentication"]), "cloudsql"),
        (ProviderMarkers.of(roles=["cloudsqlsuperuser"]), "cloudsql"),
        (
            ProviderMarkers.of(
                settings=["alloydb.logical_decoding", "cloudsql.iam_authentication"]
            ),
            "alloydb",
        ),
        (ProviderMarkers.of(settings=["azure.extensions"]), "azure"),
        (ProviderMarkers.of(roles=["azure_pg_admin"]), "azure"),
        (ProviderMarkers.of(settings=["supautils.privileged_role"]), "supabase"),
        (ProviderMarkers.of(schemas=["public", "auth", "storage", "graphql_public"]), "supabase"),
        (ProviderMarkers.of(roles=["supabase_admin"]), "supabase"),
        # One schema called auth is an application's, not Supabase.
        (ProviderMarkers.of(schemas=["public", "auth"]), None),
        (ProviderMarkers.of(schemas=["public"], settings=["wal_level"]), None),
        (ProviderMarkers(), None),
    ],
)
def test_identify_provider(markers: ProviderMarkers, expected: str | None) -> None:
    assert identify_provider(markers) == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_filter_file_parses(provider: str) -> None:
    filters = parse_filters(provider_filters(provider), f"{provider}.ini")
    assert filters.warnings == ()
    if provider == SELF_HOSTED:
        assert filters.is_empty()
    else:
        assert not filters.is_empty()


def test_supabase_filters_exclude_the_platform() -> None:
    filters = parse_filters(provider_filters("supabase"))
    assert {"auth", "storage", "realtime", "supabase_functions", "graphql"} <= set(
        filters.exclude_schema
    )
    assert {"pg_graphql", "pg_net", "pgsodium"} <= set(filters.exclude_extension)
    assert "pgrst_ddl_watch" in filters.exclude_event_trigger


def test_every_exclusion_is_explained() -> None:
    for provider in PROVIDERS:
        lines = provider_filters(provider).splitlines()
        for i, line in enumerate(lines):
            if line.startswith("[") and provider != SELF_HOSTED:
                assert lines[i + 1].startswith("#"), f"{provider}: {line} has no comment"


def test_aurora_filters_extend_rds() -> None:
    rds = parse_filters(provider_filters("rds")).exclude_extension
    aurora = parse_filters(provider_filters("aurora")).exclude_extension
    assert rds < aurora and "apg_plan_mgmt" in aurora


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        provider_filters("heroku")


def test_fixes_name_the_provider_mechanism() -> None:
    assert "rds.logical_replication" in wal_level_fix("rds")
    assert "cloudsql.logical_decoding" in wal_level_fix("cloudsql")
    assert "ALTER SYSTEM SET wal_level = logical" in wal_level_fix(None)
    assert replication_fix("aurora", "app") == 'GRANT rds_replication TO "app"; ' + (
        "(as a member of rds_superuser)"
    )
    assert '"we""ird"' in replication_fix(None, 'we"ird')
