"""The logical decoding output plugins pgferry can read (the --plugin choices)."""

PLUGINS = ("test_decoding", "wal2json", "pgoutput")
# Built into every PostgreSQL and managed service, binary, and it streams large transactions.
DEFAULT_PLUGIN = "pgoutput"
