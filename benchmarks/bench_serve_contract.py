"""What holding a served request to its version's data contract costs (runtime/wb_serve.py
ServedContract.check, `[serving] contract`).

    python benchmarks/bench_serve_contract.py [--calls 20000] [--requests 2000]

The contract is inferred from the example's own data (projects/telco-churn/data/churn.csv, 20
input columns: types, nullability, ranges, categories), boiled down to its per-row rules as a
promotion does (workbench.core.served_contract), and loaded as the server loads a release's
contract.json.

(a) the check alone: p50/p99 of `contract.check(records)` over `--calls` calls, for a 1-row and a
    100-row request of the example's columns (a clean row, and a row breaking 3 rules);
    target: the 1-row check well under a millisecond;
(b) the whole request in-process (FastAPI TestClient, a real LightGBM model trained on the same
    columns): p50 of POST /predict of 1 row over `--requests` requests with the release's
    contract.json and without it, interleaved, and the difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.core.contract import parse_contract  # noqa: E402
from workbench.core.served_contract import served_contract  # noqa: E402
from workbench.runtime import wb_serve  # noqa: E402
from workbench.services.contracts import infer_text  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "projects" / "telco-churn" / "data" / "churn.csv"
ROW = {"female": 1, "senior_citizen": 0, "partner": 1, "dependents": 0, "tenure": 1, "phone_service": 0,
       "multiple_lines": "No phone service", "internet_service": "DSL", "online_security": "No",
       "online_backup": "Yes", "device_protection": "No", "tech_support": "No", "streaming_tv": "No",
       "streaming_movies": "No", "contract": "Month-to-month", "paperless_billing": 1,
       "payment_method": "Electronic check", "monthly_charges": 29.85, "total_charges": 29.85}
BROKEN = ROW | {"tenure": 1000, "contract": "Weekly", "monthly_charges": None}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def contract_document() -> str:
    contract = parse_contract(infer_text(DATA, "data/churn.csv"), "data/churn.csv.contract.toml")
    return json.dumps(served_contract(contract, "churn"))


def check_alone(contract: wb_serve.ServedContract, calls: int) -> None:
    for label, records in (("1 row, clean", [ROW]), ("1 row, 3 breaches", [BROKEN]),
                           ("100 rows, clean", [ROW] * 100)):
        costs = []
        for _ in range(calls if len(records) == 1 else max(1, calls // 20)):
            started = time.perf_counter()
            contract.check(records)
            costs.append(time.perf_counter() - started)
        print(f"(a) check {label:<18} p50 {pct(costs, 0.5) * 1e6:8.1f} us   p99 {pct(costs, 0.99) * 1e6:8.1f} us")


def whole_request(document: str, requests: int) -> None:
    import lightgbm
    import pandas as pd
    from fastapi.testclient import TestClient

    from workbench.adapters.deploy import DeployPointers

    root = Path(tempfile.mkdtemp(prefix="bench-serve-contract-"))
    frame = pd.read_csv(DATA)
    label = (frame.pop("churn") == "Yes").astype(int)
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype("category")
    model = root / "model.txt"
    lightgbm.train({"objective": "binary", "verbosity": -1}, lightgbm.Dataset(frame, label),
                   num_boost_round=20).save_model(str(model))
    clients = {}
    for name, documents in (("with contract", {"contract.json": document}), ("without", {})):
        pointers = DeployPointers(root / name / "deploy")
        release, check = pointers.prepare("p", 1, 1, str(model), hashlib.sha256(model.read_bytes()).hexdigest())
        assert check.ok, check.problem
        pointers.activate("p", "production", release, {"version": 1, "run_id": 1}, documents)
        holder = wb_serve.ModelHolder(str(root / name / "deploy" / "p" / "production"), None, None, None)
        assert holder.refresh()
        clients[name] = TestClient(wb_serve.build_app(holder, "production"))
    costs: dict[str, list[float]] = {name: [] for name in clients}
    body = json.dumps([ROW])
    for _ in range(requests):
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
            costs[name].append(time.perf_counter() - started)
            assert response.status_code == 200 and "contract" not in response.json(), response.text
    p50 = {name: statistics.median(values) for name, values in costs.items()}
    for name, value in p50.items():
        print(f"(b) POST /predict 1 row, {name:<14} p50 {value * 1e3:7.3f} ms")
    print(f"(b) difference (with - without)       {(p50['with contract'] - p50['without']) * 1e3:+7.3f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args()
    document = contract_document()
    folder = Path(tempfile.mkdtemp(prefix="bench-contract-json-"))
    (folder / "contract.json").write_text(document)
    contract = wb_serve.ServedContract.load(str(folder / "contract.json"))
    print(f"contract: {len(contract.columns)} columns, "
          f"{sum(c.categories is not None for c in contract.columns)} with categories, "
          f"{sum(c.low is not None or c.high is not None for c in contract.columns)} with a range")
    assert not contract.check([ROW]) and len(contract.check([BROKEN])) == 3, contract.check([BROKEN])
    check_alone(contract, args.calls)
    whole_request(document, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
