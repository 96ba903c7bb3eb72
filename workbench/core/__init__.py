"""The pure domain: no I/O, no third-party imports (a test checks it)."""
