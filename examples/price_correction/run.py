"""A price of last week corrected, against a running `epochflow up`.

Three portfolios hold the same security (one of them holds a second security too); two
weeks of prices are valued. Then the price of last Wednesday is corrected. The fan-out
queues a RESET_WATERMARKS job, resets the watermark of every holder of the security to the
day before, and the scheduler values those days again: the market values of last Wednesday
change, in the same epoch (no position changed, only a valuation input). The script prints
what the read API shows before, during and after.

    .venv/bin/python examples/price_correction/run.py [--api URL] [--data-dir DIR]

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
import urllib.parse
import urllib.request
from pathlib import Path

DAYS = ("2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07",  # last week
        "2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14")  # this week
PRICES = ("20.00", "20.40", "20.00", "21.60", "21.80", "22.00", "22.10", "21.90", "22.30", "22.50")
OTHER_PRICES = ("8.00", "8.10", "8.20", "8.30", "8.40", "8.50", "8.60", "8.70", "8.80", "8.90")
CORRECTED_DAY, CORRECTED_PRICE = "2025-03-05", "21.50"  # last Wednesday: 20.00 was a bad tick


def ids(run_id: str) -> dict[str, str]:
    """This run's ids (fresh ones, so the example can run again on the same stack)."""
    return {
        "security": f"PC_{run_id}_XYZ",
        "other": f"PC_{run_id}_OTHER",
        "A": f"PC_{run_id}_A",
        "B": f"PC_{run_id}_B",
        "C": f"PC_{run_id}_C",
    }


def trade(transaction_id: str, portfolio_id: str, security_id: str, kind: str, day: str, quantity: str,
          price: str, gross: str) -> dict:
    return {
        "type": "transaction", "transaction_id": transaction_id, "portfolio_id": portfolio_id,
        "security_id": security_id, "instrument_id": security_id, "transaction_type": kind,
        "transaction_date": f"{day}T10:00:00Z", "quantity": quantity, "price": price,
        "gross_amount": gross, "trade_fee": "0", "trade_currency": "USD", "currency": "USD",
    }


def holdings(run_id: str) -> list[tuple[str, str]]:
    """(portfolio, security) of every key the example creates."""
    n = ids(run_id)
    return [(n["A"], n["security"]), (n["B"], n["security"]), (n["C"], n["security"]), (n["A"], n["other"])]


def build_events(run_id: str = "example") -> dict[str, list[dict]]:
    """The events of the example, by phase: two weeks as booked, then the correction."""
    n = ids(run_id)
    weeks: list[dict] = [
        {"type": "portfolio", "portfolio_id": n[p], "base_currency": "USD", "open_date": "2025-01-01"} for p in "ABC"
    ]
    for security, name in ((n["security"], "XYZ Industries"), (n["other"], "Other Holdings")):
        weeks.append({"type": "instrument", "security_id": security, "name": name, "isin": f"XX{security}",
                      "currency": "USD", "product_type": "Equity"})
    for day, price, other in zip(DAYS, PRICES, OTHER_PRICES):
        # each day's prices before the day itself: a price dated before the business date
        # is treated as a correction, and only the one of phase 2 should be
        weeks.append({"type": "market_price", "security_id": n["security"], "price_date": day, "price": price,
                      "currency": "USD"})
        weeks.append({"type": "market_price", "security_id": n["other"], "price_date": day, "price": other,
                      "currency": "USD"})
        weeks.append({"type": "business_date", "date": day})
    weeks += [
        trade(f"{n['A']}_BUY_XYZ", n["A"], n["security"], "BUY", DAYS[0], "100", "20.00", "2000.00"),
        trade(f"{n['A']}_BUY_OTHER", n["A"], n["other"], "BUY", DAYS[0], "300", "8.00", "2400.00"),
        trade(f"{n['B']}_BUY_XYZ", n["B"], n["security"], "BUY", DAYS[1], "250", "20.40", "5100.00"),
        trade(f"{n['C']}_BUY_XYZ", n["C"], n["security"], "BUY", DAYS[2], "40", "20.00", "800.00"),
        trade(f"{n['C']}_SELL_XYZ", n["C"], n["security"], "SELL", DAYS[6], "10", "22.10", "221.00"),
    ]
    correction = [{"type": "market_price", "security_id": n["security"], "price_date": CORRECTED_DAY,
                   "price": CORRECTED_PRICE, "currency": "USD"}]
    return {"weeks": weeks, "correction": correction}


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


def settled(lineage: dict | None, min_generation: int) -> bool:
    """The key is quiescent: CURRENT, valued up to the last day, no valuation job left to
    run, no reset job of its security open, and reset at least `min_generation` times."""
    if lineage is None:
        return False
    jobs = lineage["jobs_by_status"]
    return (
        lineage["reprocessing_status"] == "CURRENT"
        and lineage["generation"] >= min_generation
        and lineage["last_transaction_date"] is not None
        and (lineage["watermark_date"] or "") >= DAYS[-1]
        and (lineage["latest_snapshot_date"] or "") >= DAYS[-1]
        and jobs["PENDING"] == 0 and jobs["PROCESSING"] == 0
        and not lineage["open_reset_jobs"]
        and not lineage["waiting_for"]
    )


class Watch:
    """Polls lineages (and the security's reset jobs) until a condition holds, keeping each
    distinct state it saw with the time it was first seen."""

    def __init__(self, api: Api, timeout_s: float) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.lines: list[str] = []
        self._last: dict[str, object] = {}

    def note(self, what: str, state: object, text: str) -> None:
        if self._last.get(what) != state:
            self._last[what] = state
            self.lines.append(f"+{time.monotonic() - self.started:4.1f} s  {text}")

    def lineages(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict | None]:
        found = {}
        for portfolio_id, security_id in keys:
            lineage = self.api.get(f"/positions/{portfolio_id}/{security_id}/lineage/")
            found[(portfolio_id, security_id)] = lineage
            if lineage is not None:
                state = (lineage["epoch"], lineage["status"], lineage["generation"], lineage["watermark_date"])
                self.note(f"{portfolio_id}/{security_id}", state,
                          f"{portfolio_id:<14} {security_id:<16} epoch {state[0]}  {state[1]:<12}  "
                          f"generation {state[2]}  watermark {state[3]}")
        return found

    def reset_jobs(self, security_id: str, known: set[str]) -> list[dict]:
        query = urllib.parse.urlencode({"security_id": security_id})
        jobs = [j for j in self.api.get(f"/reprocessing/jobs/?{query}")["jobs"] if j["job_id"] not in known]
        for job in jobs:
            self.note(job["job_id"], (job["status"], job["keys_reset"], job["keys_total"]),
                      f"reset job {job['job_id']} ({job['subject']}, partition {job['partition']}, from "
                      f"{job['earliest_impacted_date']}): {job['status']}, {job['keys_reset']} of "
                      f"{job['keys_total']} keys reset")
        return jobs

    def check_time(self, what: object) -> None:
        if time.monotonic() - self.started > self.timeout_s:
            raise SystemExit(f"not quiescent after {self.timeout_s:.0f} s; still in flight:\n"
                             f"{json.dumps(what, indent=2, default=str)}")
        time.sleep(0.05)


# -- what is printed ----------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]], text_columns: int = 2) -> None:
    """Aligned columns: the first `text_columns` to the left, figures to the right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for cells in [header] + rows:
        print("     " + "  ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))))


def change(before: str | None, after: str | None) -> str:
    return str(after) if before == after else f"{before} -> {after}"


def positions_on(api: Api, portfolio_ids: list[str], day: str) -> dict[tuple[str, str], dict]:
    found = {}
    for portfolio_id in portfolio_ids:
        for p in api.get(f"/portfolios/{portfolio_id}/positions/?as_of={day}")["positions"]:
            found[(portfolio_id, p["security_id"])] = p
    return found


def show_positions(before: dict, after: dict | None = None) -> None:
    after = after if after is not None else before
    columns = ("quantity", "market_price", "market_value", "unrealized_gain_loss", "weight", "epoch")
    rows = [[p, s] + [change(str(before[(p, s)][c]), str(after[(p, s)][c])) for c in columns]
            for (p, s) in sorted(after)]
    table(["portfolio", "security", *columns], rows)


def snapshots(api: Api, portfolio_id: str, security_id: str) -> list[dict]:
    """The key's snapshots in its current epoch, from the day before the corrected one to
    the day after."""
    around = f"from={DAYS[DAYS.index(CORRECTED_DAY) - 1]}&to={DAYS[DAYS.index(CORRECTED_DAY) + 1]}"
    return api.get(f"/positions/{portfolio_id}/{security_id}/snapshots/?{around}")["snapshots"]


def show_snapshots(before: list[dict], after: list[dict]) -> None:
    columns = ("quantity", "market_price", "market_value", "unrealized_gain_loss", "valuation_status")
    was = {row["date"]: row for row in before}
    rows = [[row["date"]] + [change(str(was.get(row["date"], {}).get(c)), str(row[c])) for c in columns]
            for row in after]
    table(["date", *columns], rows, text_columns=1)


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
    n = ids(args.run_id)
    keys = holdings(args.run_id)
    holders = [k for k in keys if k[1] == n["security"]]
    portfolios = [n["A"], n["B"], n["C"]]
    events = build_events(args.run_id)
    print(f"api         {base_url} (from {source})")
    print(f"portfolios  {', '.join(portfolios)} hold {n['security']}; {n['A']} also holds {n['other']}")
    print()

    print(f"1. Two weeks as booked, {DAYS[0]} .. {DAYS[-1]} ({api.publish(events['weeks'])} events published)")
    watch = Watch(api, args.timeout)
    while True:
        before = watch.lineages(keys)
        if all(settled(lineage, 0) for lineage in before.values()):
            break
        watch.check_time(before)
    query = urllib.parse.urlencode({"security_id": n["security"]})
    known_jobs = {j["job_id"] for j in api.get(f"/reprocessing/jobs/?{query}")["jobs"]}
    print(f"   quiescent after {time.monotonic() - watch.started:.1f} s: every key CURRENT, valued up to {DAYS[-1]}, "
          f"epoch {', '.join(str(e) for e in sorted({lineage['epoch'] for lineage in before.values()}))}, "
          f"{len(known_jobs)} reset jobs for {n['security']}")
    positions_before = positions_on(api, portfolios, CORRECTED_DAY)
    snapshots_before = snapshots(api, n["B"], n["security"])
    print(f"   positions valued on {CORRECTED_DAY} (price {PRICES[DAYS.index(CORRECTED_DAY)]}):")
    show_positions(positions_before)
    print()

    print(f"2. The price of {n['security']} on {CORRECTED_DAY} is corrected to {CORRECTED_PRICE} "
          f"({api.publish(events['correction'])} event published)")
    watch = Watch(api, args.timeout)
    while True:
        jobs = watch.reset_jobs(n["security"], known_jobs)
        after = watch.lineages(keys)
        done = (
            jobs and all(j["status"] in ("COMPLETE", "FAILED") for j in jobs)
            and sum(j["keys_total"] for j in jobs) >= len(holders)
            and all(settled(after[k], before[k]["generation"] + 1) for k in holders)
            and all(settled(after[k], 0) for k in keys)
        )
        if done:
            corrected = positions_on(api, portfolios, CORRECTED_DAY)
            if all(corrected[k]["market_price"] == CORRECTED_PRICE for k in holders):
                break
        watch.check_time({"reset jobs": jobs, "lineages": after})
    print("   what the read API showed while the correction was applied (first time each state was seen):")
    for line in watch.lines:
        print(f"     {line}")
    print(f"   quiescent after {time.monotonic() - watch.started:.1f} s")
    print()
    print("   each key, before -> after:")
    rows = [[p, s, change(str(before[(p, s)]["epoch"]), str(after[(p, s)]["epoch"])),
             change(str(before[(p, s)]["generation"]), str(after[(p, s)]["generation"])),
             after[(p, s)]["status"], str(after[(p, s)]["watermark_date"])] for p, s in keys]
    table(["portfolio", "security", "epoch", "generation", "status", "watermark"], rows)
    print(f"   positions valued on {CORRECTED_DAY}, before -> after:")
    show_positions(positions_before, corrected)
    print(f"   snapshots of {n['B']} / {n['security']} around it, before -> after:")
    show_snapshots(snapshots_before, snapshots(api, n["B"], n["security"]))


if __name__ == "__main__":
    main()
