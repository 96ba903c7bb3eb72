"""The core stays pure: importing it pulls in no I/O library (STYLE.md, habit 1)."""

import subprocess
import sys

# numpy and scipy are allowed: drift statistics are domain logic (workbench/core/drift_stats.py uses
# numpy and scipy.stats, nothing that does I/O). pandas stays out: adapters read the files and
# hand the core plain arrays.
FORBIDDEN = ("textual", "rich", "duckdb", "docker", "mlflow", "lightgbm", "watchdog", "pandas")


def test_core_imports_no_io_libraries():
    code = (
        "import sys, pkgutil, importlib, workbench.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('workbench.core.' + m.name)\n"
        "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not set(FORBIDDEN) & set(loaded), f"core imported {set(FORBIDDEN) & set(loaded)}"


def test_cli_and_services_do_not_import_adapters_at_module_level():
    """Front ends reach adapters only through the session, lazily, to keep start-up fast."""
    code = "import sys, workbench.cli.main, workbench.cli.commands; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "duckdb" not in loaded and "docker" not in loaded and "mlflow" not in loaded
