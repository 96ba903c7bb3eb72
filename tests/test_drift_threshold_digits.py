"""A drift threshold raised to a small batch's sampling noise prints like the statistic beside it.

The threshold a column reports is the higher of the manifest's and the noise of a batch its size,
so it is often a computed number: `workbench drift` printed it with six digits
("> 0.210865 sd" next to "0.474 sd" and "> 0.1 sd"), which reads as false precision.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

MANIFEST = """
[project]
name = "pay"

[data]
paths = ["data/pay.csv"]
incoming = "data/incoming"

[stages.validate]
command = "python validate.py"
inputs = ["validate.py"]
"""


def test_a_noise_raised_threshold_prints_three_significant_digits(tmp_path):
    project = tmp_path / "pay"
    (project / "data" / "incoming").mkdir(parents=True)
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "validate.py").write_text("print('ok')\n")
    rng = np.random.default_rng(3)
    wages = rng.lognormal(6, 1.2, 3000)  # heavy-tailed, like hourly wages: a 40-row batch is noisy
    (project / "data" / "pay.csv").write_text("wage\n" + "".join(f"{w:.2f}\n" for w in wages))
    (project / "data" / "incoming" / "b.csv").write_text("wage\n" + "".join(f"{w:.2f}\n" for w in wages[:40]))

    checked = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "drift", "pay", "b.csv"],
                             capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (row,) = [line for line in checked.stdout.splitlines() if line.startswith("wage ")]
    threshold = re.search(r"> (\S+) sd", row)
    assert threshold and float(threshold[1]) > 0.1, row  # raised above the manifest's 0.1 by the noise
    digits = threshold[1].replace("0.", "", 1).lstrip("0")
    assert len(digits) <= 3, row
