"""Alerts of the drift loop, through the real drift service and local runs: promotions, a
drifted batch, the retrain it starts and its end, and a decayed labelled batch; a clean batch
says nothing."""

from __future__ import annotations

import pytest

from tests.notify_receiver import Receiver
from tests.test_drift import MANIFEST, batch, in_production, sales, write_project
from workbench.services.drift import DriftService
from workbench.services.session import WorkbenchSession


@pytest.mark.slow
def test_the_drift_loop_alerts_drift_retrain_and_decay(tmp_path):
    receiver = Receiver().start()
    try:
        write_project(tmp_path, MANIFEST + f'\n[[notify.webhooks]]\nurl = "{receiver.url}"\n')
        session = WorkbenchSession(tmp_path, runner="local")
        in_production(session)
        service = DriftService(session)
        service.check_batch("shop", batch(tmp_path, "clean.csv", sales(400, seed=7)))
        drifted = service.check_batch("shop", batch(tmp_path, "drifted.csv", sales(400, seed=8, shift=15,
                                                                                   mix=(0.1, 0.2, 0.7))))
        record = service.retrain("shop", drifted)
        flipped = service.check_batch("shop", batch(tmp_path, "flipped.csv", sales(400, seed=5, flip=True)))
        assert flipped.report.decay.decayed
        assert session.alerts.drain() == (6, 0) and session.alerts.problems == []
    finally:
        receiver.stop()
    bodies = receiver.bodies()
    assert [b["kind"] for b in bodies] == ["promoted", "promoted", "batch_drifted", "retrain_started",
                                           "retrain_finished", "batch_decayed"]
    drift = bodies[2]
    assert drift["summary"].startswith("shop: batch data/incoming/drifted.csv drifted")
    assert drift["details"]["drifted_columns"] == ["amount", "plan"]
    assert bodies[3]["details"]["run_id"] == bodies[4]["details"]["run_id"] == record.id
    assert bodies[4]["summary"] == f"retrain run {record.id} of shop finished: succeeded"
    decay = bodies[5]
    assert decay["details"]["metric"] == "accuracy" and decay["details"]["drop"] > 0.5
