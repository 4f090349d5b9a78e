"""A trade booked three days late, against a running `epochflow up`.

One portfolio buys a security on Monday and Wednesday, with a price every day from Monday
to Friday. Once the week is valued (epoch 0), a SELL dated Tuesday arrives on Friday. The
engine opens epoch 1, marks the key REPROCESSING, rebuilds the history from Tuesday on,
values the days again and marks it CURRENT. The script prints what the read API shows
before, during and after.

    .venv/bin/python examples/backdated_trade/run.py [--api URL] [--data-dir DIR]

Standard library only: the events are plain scenario-format dicts (shared/acceptance/
FORMAT.md), published with `POST /ingest/` and read back from the read API.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DAYS = ("2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14")  # Monday to Friday
PRICES = ("50.00", "51.00", "52.00", "53.50", "54.00")
LATE_DAY = "2025-03-11"  # the late SELL's date: three days before Friday


def ids(run_id: str) -> tuple[str, str]:
    """The portfolio and security of one run (fresh ids, so the example can run again on
    the same stack)."""
    return f"BD_{run_id}", f"BD_{run_id}_ACME"


def trade(transaction_id: str, portfolio_id: str, security_id: str, kind: str, day: str, quantity: str,
          price: str, gross: str) -> dict:
    return {
        "type": "transaction", "transaction_id": transaction_id, "portfolio_id": portfolio_id,
        "security_id": security_id, "instrument_id": "ACME", "transaction_type": kind,
        "transaction_date": f"{day}T10:00:00Z", "quantity": quantity, "price": price,
        "gross_amount": gross, "trade_fee": "0", "trade_currency": "USD", "currency": "USD",
    }


def build_events(run_id: str = "example") -> dict[str, list[dict]]:
    """The events of the example, by phase: the week as booked on time, then the late trade."""
    portfolio_id, security_id = ids(run_id)
    week: list[dict] = [
        {"type": "portfolio", "portfolio_id": portfolio_id, "base_currency": "USD", "open_date": "2025-01-01"},
        {"type": "instrument", "security_id": security_id, "name": "Acme Corp", "isin": f"XX{run_id}",
         "currency": "USD", "product_type": "Equity"},
    ]
    for day, price in zip(DAYS, PRICES):
        # each day's price before the day itself: a price dated before the business date
        # would be a correction, which the other example is about
        week.append({"type": "market_price", "security_id": security_id, "price_date": day, "price": price,
                     "currency": "USD"})
        week.append({"type": "business_date", "date": day})
    week.append(trade(f"{portfolio_id}_BUY_MON", portfolio_id, security_id, "BUY", DAYS[0], "100", "50.00", "5000.00"))
    week.append(trade(f"{portfolio_id}_BUY_WED", portfolio_id, security_id, "BUY", DAYS[2], "50", "52.00", "2600.00"))
    late = [trade(f"{portfolio_id}_SELL_TUE", portfolio_id, security_id, "SELL", LATE_DAY, "40", "51.00", "2040.00")]
    return {"week": week, "late": late}


# -- talking to the running stack ---------------------------------------------------------

class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = os.environ.get("EPOCHFLOW_API_TOKEN")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as error:
            raise SystemExit(f"{method} {self.base_url}{path}: {error.reason} (is the stack still up?)") from None

    def get(self, path: str) -> dict | None:
        """The JSON body, or None for a 404 (nothing there yet)."""
        try:
            return self.call("GET", path)  # type: ignore[return-value]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise SystemExit(f"GET {path}: {error.code} {error.read().decode(errors='replace')}") from None

    def publish(self, events: list[dict]) -> int:
        try:
            return self.call("POST", "/ingest/", events)["published"]  # type: ignore[index]
        except urllib.error.HTTPError as error:
            raise SystemExit(f"POST /ingest/: {error.code} {error.read().decode(errors='replace')}") from None


def find_api(data_dir: str | None) -> tuple[str, str]:
    """The api worker's URL of the running stack: `epochflow status --json`, else the run
    file `epochflow up` writes into its data dir."""
    epochflow = Path(sys.executable).with_name("epochflow")
    command = str(epochflow) if epochflow.exists() else shutil.which("epochflow")
    if command:
        args = [command, "status", "--json"] + (["--data-dir", data_dir] if data_dir else [])
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode == 0:
            for worker in json.loads(done.stdout)["roles"].get("api", {}).get("workers") or []:
                if worker.get("alive") and worker.get("web_port"):
                    return f"http://127.0.0.1:{worker['web_port']}", "`epochflow status --json`"
    run_file = Path(data_dir or os.environ.get("EPOCHFLOW_DATA_DIR", ".epochflow")) / "run.json"
    try:
        run = json.loads(run_file.read_text())
    except (OSError, ValueError):
        run = {}
    for worker in run.get("workers", []):
        if worker.get("role") == "api" and worker.get("web_port"):
            return f"http://127.0.0.1:{worker['web_port']}", str(run_file)
    raise SystemExit("no running stack found: start one with `.venv/bin/epochflow up` in another terminal "
                     "(or pass --api URL / --data-dir DIR)")


def settled(lineage: dict | None, history_rows: int, min_epoch: int) -> bool:
    """The key is quiescent: CURRENT, valued up to Friday, every transaction in its history,
    no valuation job left to run."""
    if lineage is None:
        return False
    jobs = lineage["jobs_by_status"]
    return (
        lineage["reprocessing_status"] == "CURRENT"
        and lineage["epoch"] >= min_epoch
        and lineage["history_rows"] == history_rows
        and (lineage["watermark_date"] or "") >= DAYS[-1]
        and (lineage["latest_snapshot_date"] or "") >= DAYS[-1]
        and jobs["PENDING"] == 0 and jobs["PROCESSING"] == 0
        and not lineage["waiting_for"]
    )


def watch(api: Api, key_path: str, history_rows: int, min_epoch: int, timeout_s: float) -> tuple[dict, list[str]]:
    """Poll the key's lineage until it is settled; returns it and each distinct
    (epoch, status, watermark) seen on the way, with the time it was first seen."""
    started = time.monotonic()
    seen: list[str] = []
    last = None
    lineage = None
    while True:
        lineage = api.get(f"/positions/{key_path}/lineage/")
        if lineage is not None:
            state = (lineage["epoch"], lineage["status"], lineage["watermark_date"])
            if state != last:
                last = state
                seen.append(f"+{time.monotonic() - started:4.1f} s  epoch {state[0]}  {state[1]:<12}  "
                            f"watermark {state[2]}")
        if settled(lineage, history_rows, min_epoch):
            return lineage, seen
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"not quiescent after {timeout_s:.0f} s; the key's lineage now:\n"
                             f"{json.dumps(lineage, indent=2)}")
        time.sleep(0.05)


# -- what is printed ----------------------------------------------------------------------

def show_lineage(lineage: dict) -> None:
    print(f"   lineage: epoch {lineage['epoch']}, {lineage['status']} (reprocessing_status "
          f"{lineage['reprocessing_status']}), watermark {lineage['watermark_date']}, "
          f"epochs in history {lineage['epochs_in_history']}, {lineage['history_rows']} history rows, "
          f"{lineage['snapshot_count']} snapshots")


def show_snapshots(before: list[dict], after: list[dict] | None = None) -> None:
    """The snapshots as a table; given `after`, each changed figure as `before -> after`."""
    columns = ("date", "quantity", "cost_basis", "market_price", "market_value", "unrealized_gain_loss")
    old = {row["date"]: row for row in before}
    rows = []
    for row in after if after is not None else before:
        was = old.get(row["date"], {})
        rows.append([row[c] if after is None or was.get(c) == row[c] else f"{was.get(c, '-')} -> {row[c]}"
                     for c in columns])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for cells in [list(columns)] + rows:
        print("     " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))))


def show_position(body: dict) -> None:
    for p in body["positions"]:
        print(f"   position on {body['as_of']}: quantity {p['quantity']}, cost {p['cost_basis']}, "
              f"market value {p['market_value']}, unrealized {p['unrealized_gain_loss']}, epoch {p['epoch']}, "
              f"{p['reprocessing_status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default=os.environ.get("EPOCHFLOW_API_URL"),
                        help="the api worker's URL (default: found with `epochflow status --json`)")
    parser.add_argument("--data-dir", default=None, help="the data dir `epochflow up` was started with")
    parser.add_argument("--run-id", default=time.strftime("%H%M%S"), help="suffix of this run's ids")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for quiescence")
    args = parser.parse_args()

    base_url, source = (args.api, "--api") if args.api else find_api(args.data_dir)
    api = Api(base_url)
    portfolio_id, security_id = ids(args.run_id)
    key_path = f"{portfolio_id}/{security_id}"
    events = build_events(args.run_id)
    print(f"api        {base_url} (from {source})")
    print(f"portfolio  {portfolio_id}, security {security_id}")
    print()

    print(f"1. The week as booked: prices {DAYS[0]} .. {DAYS[-1]}, BUY 100 @ 50.00 on Monday, BUY 50 @ 52.00 "
          f"on Wednesday ({api.publish(events['week'])} events published)")
    lineage, _ = watch(api, key_path, history_rows=2, min_epoch=0, timeout_s=args.timeout)
    epoch_before = lineage["epoch"]
    show_lineage(lineage)
    print(f"   snapshots in epoch {epoch_before}:")
    snapshots_before = api.get(f"/positions/{key_path}/snapshots/?from={DAYS[0]}&to={DAYS[-1]}")["snapshots"]
    show_snapshots(snapshots_before)
    show_position(api.get(f"/portfolios/{portfolio_id}/positions/?as_of={DAYS[-1]}"))
    print()

    print(f"2. On Friday a SELL 40 @ 51.00 dated Tuesday {LATE_DAY} is booked, three days late "
          f"({api.publish(events['late'])} event published)")
    print("   the key's lineage while the engine repairs it (first time each state was seen):")
    lineage, seen = watch(api, key_path, history_rows=3, min_epoch=epoch_before + 1, timeout_s=args.timeout)
    for line in seen:
        print(f"     {line}")
    show_lineage(lineage)
    history = api.get(f"/positions/{key_path}/history/")["history"]
    print("   position history in epoch", lineage["epoch"], "(quantity and cost after each transaction):")
    for row in history:
        print(f"     {row['position_date']}  {row['transaction_id']:<28} quantity {row['quantity']:>6}  "
              f"cost {row['cost_basis']}")
    print(f"   snapshots, epoch {epoch_before} -> epoch {lineage['epoch']}:")
    snapshots_after = api.get(f"/positions/{key_path}/snapshots/?from={DAYS[0]}&to={DAYS[-1]}")["snapshots"]
    show_snapshots(snapshots_before, snapshots_after)
    show_position(api.get(f"/portfolios/{portfolio_id}/positions/?as_of={DAYS[-1]}"))


if __name__ == "__main__":
    main()
