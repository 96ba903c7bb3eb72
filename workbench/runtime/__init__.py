"""Code that runs inside a stage's container or process, not in the workbench itself.

`wb.py` is mounted read-only into every stage (and put on PYTHONPATH), so user code can
`import wb` with no install step in the user's image. It must stay dependency-free and
compatible with any Python 3.8+ the user's image may carry.
"""

from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parent
