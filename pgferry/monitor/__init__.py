"""Watching a migration: the status and CDC dashboards' figures, read from DIR and the servers."""
