"""`workbench models` in a workspace whose production alias was forged: the table listed the
forged alias as a plain `production` (only a note on stderr said otherwise), and that note
named the project twice (`tiny: deploy pointers not repaired: tiny: refused: …`)."""

from __future__ import annotations

import json

from tests.test_audit_tamper import built, copy_of, sql  # noqa: F401 (built is a fixture)
from tests.test_cli import wb


def test_a_forged_alias_is_marked_in_the_table_and_the_note_names_the_project_once(built, tmp_path):  # noqa: F811
    ws = copy_of(built, tmp_path)
    sql(ws, "UPDATE aliases SET version = 2 WHERE alias = 'production'")
    shown = wb(ws, "models", "tiny", env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["2"])
    assert "production ✗ unverified" in row and "staging" in row, shown.stdout
    plain = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["1"])
    assert "unverified" not in plain, shown.stdout
    assert "✗ production unverified: holds version 2, but the audit trail puts version 1 there" in shown.stdout
    note = " ".join(shown.stderr.split())
    assert "tiny: deploy pointers not repaired: the audit trail does not vouch for the registry" in note, note
    assert "tiny: deploy pointers not repaired: tiny:" not in note

    listed = json.loads(wb(ws, "models", "tiny", "--json").stdout)
    assert {v["version"]: v["unverified_aliases"] for v in listed} == {2: ["production"], 1: []}
