"""Reproduced results, one module per experiment; each returns data that `iterdiff.cli` prints."""
