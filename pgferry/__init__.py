"""pgferry: move a live PostgreSQL database to another PostgreSQL server."""

__version__ = "0.1.0"
