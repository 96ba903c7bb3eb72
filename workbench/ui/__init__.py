"""The Textual front end. It imports services and core only (tests/test_core_purity.py checks
that no Docker, DuckDB or MLflow module is loaded by importing it)."""
