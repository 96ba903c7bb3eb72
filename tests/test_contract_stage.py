"""The built-in `contract` stage, through the front end (`workbench run`, `show --json`,
`contract infer/check`) on the local runner and a real lineage store: it runs before the
project's stages, is reused while the data and the contract are unchanged, fails the run and
keeps every stage from running on an error, and records warnings."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from workbench.cli.main import main
from workbench.core.model import StageStatus
from workbench.services.inspect import validation_report
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "shop"

[data]
paths = ["data/orders.csv"]

[stages.fit]
command = "python fit.py"
inputs = ["fit.py", "data/orders.csv"]
"""

FIT = """
import wb
rows = open("data/orders.csv").read().splitlines()
wb.log_metrics({"rows": len(rows) - 1})
"""

ORDERS = "id,amount,country\n" + "".join(f"{i},{10 + i % 7}.5,{'DE' if i % 3 else 'FR'}\n" for i in range(1, 41))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    (project / "data").mkdir(parents=True)
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "fit.py").write_text(textwrap.dedent(FIT))
    (project / "data" / "orders.csv").write_text(ORDERS)
    return tmp_path


def cli(workspace: Path, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["-w", str(workspace), *args])
    return code, capsys.readouterr().out


def run(workspace: Path, capsys) -> tuple[int, dict]:
    code, _ = cli(workspace, capsys, "run", "shop", "--runner", "local", "--json", "-q")
    record = WorkbenchSession(workspace, runner="local").runs("shop", limit=1)[0]
    _, shown = cli(workspace, capsys, "show", str(record.id), "--json")
    return code, json.loads(shown)


def stages(shown: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in shown["stages"]}


def test_the_contract_stage_runs_first_is_reused_and_blocks_on_errors(workspace, capsys):
    data = workspace / "shop" / "data" / "orders.csv"
    code, out = cli(workspace, capsys, "contract", "infer", str(data), "--write")
    assert code == 0 and Path(f"{data}.contract.toml").is_file()

    code, first = run(workspace, capsys)
    assert code == 0 and [s["stage"] for s in first["stages"]] == ["contract", "fit"]
    assert stages(first)["contract"]["status"] == "succeeded"
    assert stages(first)["contract"]["metrics"]["contract_errors"] == 0

    code, second = run(workspace, capsys)  # nothing changed: both reused
    assert {s["stage"]: s["status"] for s in second["stages"]} == {"contract": "reused", "fit": "reused"}

    contract = Path(f"{data}.contract.toml")  # a new contract reruns the check alone
    contract.write_text(contract.read_text() + '\n[[rules]]\nname = "small"\nsql = "amount < 16"\nseverity = "warning"\n')
    code, third = run(workspace, capsys)
    assert code == 0
    assert {s["stage"]: s["status"] for s in third["stages"]} == {"contract": "succeeded", "fit": "reused"}
    assert stages(third)["contract"]["metrics"]["contract_warnings"] == 1  # recorded, the run goes on

    data.write_text(ORDERS + "41,12.5,XX\n41,-500.0,DE\n")  # lines 42 and 43
    code, fourth = run(workspace, capsys)
    assert code == 1 and fourth["status"] == "failed"
    check = stages(fourth)["contract"]
    assert check["status"] == "failed"
    assert "country" in check["reason"] and "line 42: XX" in check["reason"]
    assert "holding a value an earlier row holds" in check["reason"] and "line 43: 41" in check["reason"]
    assert stages(fourth)["fit"]["status"] == "skipped"
    assert "not run: upstream stage contract failed" in stages(fourth)["fit"]["reason"]

    # the Validation tab's report: the contract's findings, with counts and lines
    record = WorkbenchSession(workspace, runner="local").get_run(fourth["id"])
    report = validation_report(record)
    assert report.stage == "contract" and report.content["ok"] is False
    messages = [f["message"] for f in report.content["findings"]]
    assert any("1 row below min" in m and "line 43: -500.0" in m for m in messages)
    assert report.content["contracts"][0]["breaches"]


def test_a_contract_that_does_not_parse_fails_the_stage_naming_file_and_key(workspace, capsys):
    (workspace / "shop" / "data" / "orders.csv.contract.toml").write_text("[columns.amount]\ntype = 'money'\n")
    code, shown = run(workspace, capsys)
    assert code == 1
    reason = stages(shown)["contract"]["reason"]
    assert reason.startswith("data/orders.csv.contract.toml: columns.amount.type: must be one of integer")
    assert stages(shown)["fit"]["status"] == "skipped"


def test_a_project_without_contracts_has_no_contract_stage(workspace, capsys):
    code, shown = run(workspace, capsys)
    assert code == 0 and [s["stage"] for s in shown["stages"]] == ["fit"]


def test_contract_check_command_exit_codes_and_json(workspace, capsys):
    data = workspace / "shop" / "data" / "orders.csv"
    assert cli(workspace, capsys, "contract", "check", "shop")[0] == 0  # no contract: nothing to break
    cli(workspace, capsys, "contract", "infer", str(data), "--write")
    code, out = cli(workspace, capsys, "contract", "infer", str(data), "--write")
    assert code == 3  # never overwritten without --force
    data.write_text(ORDERS + "41,12.5,DE,extra\n")
    code, out = cli(workspace, capsys, "contract", "check", "shop", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    breach = report["reports"][0]["breaches"][0]
    assert breach["rule"] == "malformed" and breach["examples"] == [
        {"line": 42, "value": "4 fields where the header has 3"}]


def test_init_writes_a_first_contract_for_the_projects_data(tmp_path, capsys):
    project = tmp_path / "fresh"
    (project / "stages").mkdir(parents=True)
    (project / "stages" / "train.py").write_text("import pandas as pd\ndf = pd.read_csv('data/orders.csv')\nprint(len(df))\n")
    (project / "data").mkdir()
    (project / "data" / "orders.csv").write_text(ORDERS)
    code, out = cli(tmp_path, capsys, "init", str(project))
    assert code == 0 and "data/orders.csv.contract.toml" in out
    contract = (project / "data" / "orders.csv.contract.toml").read_text()
    assert "[columns.country]" in contract and 'categories = ["DE", "FR"]' in contract
    session = WorkbenchSession(tmp_path, runner="local")
    record = session.run("fresh")
    assert record.stages[0].stage == "contract" and record.stages[0].status is StageStatus.SUCCEEDED


from tests.test_tui import asyncio_test, make_app, opened, private_config, static_text, wait_for  # noqa: E402,F401


@asyncio_test
async def test_tui_validation_tab_shows_the_broken_contract_by_line(workspace):
    data = workspace / "shop" / "data" / "orders.csv"
    (workspace / "shop" / "data" / "orders.csv.contract.toml").write_text(
        '[columns.country]\ntype = "string"\ncategories = ["DE", "FR"]\n')
    data.write_text(ORDERS + "41,12.5,XX\n")
    record = WorkbenchSession(workspace, runner="local").run("shop")
    assert str(record.status) == "failed" and record.stages[0].stage == "contract"
    app = make_app(workspace)
    async with app.run_test(size=(200, 45)) as pilot:
        main = await opened(pilot, runs=1)
        await wait_for(pilot, lambda: main.detail.record is not None and main.detail.record.id == record.id,
                       what="the run's detail")
        validation = static_text(main.detail.query_one("#validation-view"), width=400)
        assert "✗ failed" in validation and "contract/report.json" in validation
        assert "country: 1 row not in categories [DE, FR] (line 42: XX)" in validation, validation


def test_a_project_stage_named_contract_is_refused_while_contracts_exist(workspace, capsys):
    manifest = workspace / "shop" / "workbench.toml"
    manifest.write_text(manifest.read_text().replace("[stages.fit]", "[stages.contract]"))
    (workspace / "shop" / "data" / "orders.csv.contract.toml").write_text("[table]\nmin_rows = 1\n")
    code, shown = run(workspace, capsys)
    assert code == 1 and [s["stage"] for s in shown["stages"]] == ["contract"]
    assert "rename it in workbench.toml" in shown["stages"][0]["reason"]


def test_a_broken_contract_reaches_a_webhook_as_contract_broken(workspace, capsys):
    """Through `workbench run` and `notify sync`, to a real HTTP receiver: the run's data breaks
    its contract, and the alert says which column and line."""
    from tests.notify_receiver import Receiver

    receiver = Receiver().start()
    try:
        (workspace / "workspace.toml").write_text(f'[[notify.webhooks]]\nurl = "{receiver.url}"\n'
                                                  'events = ["contract_broken"]\n')
        data = workspace / "shop" / "data" / "orders.csv"
        assert cli(workspace, capsys, "contract", "infer", str(data), "--write")[0] == 0
        data.write_text(ORDERS + "41,12.5,XX\n")  # line 42: a country the contract does not allow
        code, shown = run(workspace, capsys)
        assert code == 1 and shown["status"] == "failed"
        assert cli(workspace, capsys, "notify", "sync")[0] == 0
        (body,) = receiver.bodies()
    finally:
        receiver.stop()
    assert body["kind"] == "contract_broken" and body["project"] == "shop"
    assert "the data broke its contract in run" in body["summary"] and "line 42: XX" in body["summary"]
