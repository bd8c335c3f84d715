"""The logical decoding output plugins pgferry can read (the --plugin choices)."""

PLUGINS = ("test_decoding", "wal2json", "pgoutput")
