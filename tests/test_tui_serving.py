"""The Serving view (S) driven by Pilot against a real server: runtime/wb_serve.py's app under a
real uvicorn on a free port of this process, answering a real LightGBM model from a real deploy
folder (tests/test_serve_app.py's fixtures), scraped over HTTP each second.

What is not real there is the container listing: ServingService lists Docker containers, so the
view is given a listing that names the in-process server instead (ListedServers). The last test
(docker, slow) serves the example project in real containers from the TUI and stops them with x
and by quitting."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request

import pytest

from tests.test_tui import (  # noqa: F401  (fixtures: private_config is autouse)
    asyncio_test, make_app, opened, private_config, shown, table_rows, wait_for, workspace,
)
from workbench.services.serving import ServerStatus, _health

pytest.importorskip("lightgbm")
uvicorn = pytest.importorskip("uvicorn")
from tests.test_serve_app import ROW, SCHEMA, _release  # noqa: E402
from workbench.runtime import wb_serve  # noqa: E402
from workbench.ui.screens.serving import ServingScreen  # noqa: E402
from workbench.ui.widgets.serving import ServingChart, ServingTable  # noqa: E402


class ListedServers:
    """ServingService with the container listing replaced by `urls` (alias -> url of a server
    of this process); health is asked over HTTP as ServingService.status does."""
    urls: dict[str, str] = {}

    def __init__(self, session, client=None) -> None:
        self.session = session

    def status(self, project=None) -> list[ServerStatus]:
        found = []
        for alias, url in self.urls.items():
            code, body = _health(url)
            found.append(ServerStatus("tiny", alias, body.get("version"), url, int(url.rsplit(":", 1)[1]),
                                      f"in-process-{alias}", body.get("since") or "", code == 200,
                                      "" if code == 200 else "not answering"))
        return found


@pytest.fixture
def live_server(tmp_path):
    """wb_serve's app for version 1 of project p under uvicorn on a free port; its url."""
    _release(tmp_path, "production", 1)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    holder = wb_serve.ModelHolder(str(tmp_path / "deploy" / "p" / "production"), None, None,
                                  wb_serve.Schema.load(str(tmp_path / "schema.json")))
    assert holder.refresh()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(wb_serve.build_app(holder, "production"), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _ask(url: str, body: dict | str) -> int:
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    request = urllib.request.Request(url + "/predict", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@asyncio_test
async def test_serving_view_refuses_without_production_then_shows_a_server_growing(workspace, live_server,
                                                                                    monkeypatch):
    monkeypatch.setattr("workbench.services.serving.ServingService", ListedServers)
    monkeypatch.setattr(ListedServers, "urls", {})
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        # Nothing served and nothing in production: a clear refusal, no screen left open.
        await pilot.press("S")
        await wait_for(pilot, lambda: any("no version is in production" in m for _, m, _ in app.notes),
                       what="the refusal")
        await wait_for(pilot, lambda: not isinstance(app.screen, ServingScreen), what="the screen to close")
        assert any(s == "error" and "promote" in m for s, m, _ in app.notes)

        # Served by another process: shown, status only.
        monkeypatch.setattr(ListedServers, "urls", {"production": live_server})
        await pilot.press("S")
        await shown(pilot, "Serving · tiny", "production", "version 1", live_server, "● healthy",
                    "served by another `workbench serve`")
        screen = app.screen
        assert isinstance(screen, ServingScreen)
        for _ in range(20):
            assert _ask(live_server, {"records": [ROW]}) == 200
        assert _ask(live_server, "{oops") == 400
        table = screen.query_one(ServingTable)

        def champion():
            rows = [r for r in table_rows(table) if r[:2] == ["production v1", "champion"]]
            return rows[0] if rows and rows[0][7] == "21" else None
        row = await wait_for(pilot, champion, what="21 requests in the table")
        assert row[6] == "4.8%"  # 1 of 21 answered 400
        assert 0 < float(row[3]) <= float(row[5]) <= 5000  # p50 <= p99, in ms
        assert "quality" not in [str(key.value) for key in table.columns]  # none known yet

        # More requests: the totals grow and the charts draw the version's line over time.
        for _ in range(30):
            assert _ask(live_server, {"records": [ROW]}) == 200
        await wait_for(pilot, lambda: [r for r in table_rows(table) if r[7] == "51"], what="51 requests")
        charts = {chart.quantity: chart for chart in screen.query(ServingChart)}
        await wait_for(pilot, lambda: charts["req/s"].lines.get("production v1 champion", 0) >= 2
                       and charts["p99 ms"].lines.get("production v1 champion", 0) >= 1, what="chart lines")
        text = await shown(pilot, "req/s per version", "p99 ms per version")
        assert "production v1 champion" in text

        # x refuses: another process's servers are not this app's to stop.
        await pilot.press("x")
        await wait_for(pilot, lambda: any("served by another `workbench serve`" in m for _, m, _ in app.notes),
                       what="the refusal to stop")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ServingScreen), what="back to the main screen")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@asyncio_test
async def test_s_serves_the_example_in_containers_x_and_quitting_stop_them(docker_engine, tmp_path, monkeypatch):
    from tests.test_cli import wb
    from tests.test_registry_cli import EXAMPLE, P, ok
    from tests.test_serve_docker import _post, _rows

    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        # traffic becomes a drift batch after 20 rows, its log segments close each second
                        + "\n[serving]\nsegment_seconds = 1\nbatch_rows = 20\n")
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "1", "--to", "staging", "--yes"))
    ok(wb(ws, "promote", P, "1", "--to", "production", "--yes"))

    def servers() -> set[str]:
        return {c.name for c in docker_engine.containers.list(all=True, filters={"label": "workbench.role=server"})}

    app = make_app(ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("S")

        def healthy():
            screen = app.screen
            view = getattr(screen, "view", None) if isinstance(screen, ServingScreen) else None
            return view if view and len(view.aliases) == 2 and all(a.healthy for a in view.aliases) else None
        view = await wait_for(pilot, healthy, timeout=240, what="both servers healthy")
        started = {a.container for a in view.aliases}
        assert all(a.owned for a in view.aliases) and app.served_here == started and started <= servers()
        production = next(a for a in view.aliases if a.alias == "production")
        assert _post(production.url, json.dumps({"records": _rows(ws, 1)}).encode())[0] == 200
        table = app.screen.query_one(ServingTable)
        await wait_for(pilot, lambda: [r for r in table_rows(table) if r[0] == "production v1" and r[7] == "1"],
                       what="the request counted")
        # The servers started here are kept like `workbench serve`'s: production's traffic becomes
        # a drift batch, checked, and the app says so.
        assert set(app.keepers) == {P}
        assert _post(production.url, json.dumps({"records": _rows(ws, 25)}).encode())[0] == 200
        await wait_for(pilot, lambda: any("traffic batch 1" in m for _, m, _ in app.notes), timeout=90,
                       what="the traffic batch checked")

        await pilot.press("x")
        await pilot.press("y")
        # A server being stopped is renamed NAME-stopping first (serving_containers.remove).
        leaving = started | {f"{name}-stopping" for name in started}
        await wait_for(pilot, lambda: not app.served_here and not leaving & servers(), timeout=60,
                       what="x to remove the servers")
        assert app.keepers == {}
        await pilot.press("escape")
        await pilot.press("S")
        again = await wait_for(pilot, healthy, timeout=240, what="the servers started again")
        started = {a.container for a in again.aliases}
    # quitting removed the servers this app started
    assert not (started | {f"{name}-stopping" for name in started}) & servers()
