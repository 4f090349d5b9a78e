"""What a benchmark's workers hold at the end of a run: each worker's peak resident memory
(`VmHWM`, Linux) and its local table files on disk, and the broker's peak memory, so
`bench fanout` can say what one key costs a worker and whether memory stays bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def peak_rss_bytes(pid: int | None) -> int | None:
    """The process's peak resident set size, or None when it cannot be read."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def disk_bytes(directory: str | Path) -> int:
    """Bytes of the files under `directory`; a file a running worker removes meanwhile
    (RocksDB compacting) counts as gone."""
    total = 0
    for path in Path(directory).rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def footprint(description: dict[str, Any], keys: int) -> dict[str, Any]:
    """Per worker of a stack (`EmbeddedStack.describe()`): peak RSS and local table bytes,
    and each per key of the `keys` the run loaded; the broker's peak RSS."""
    workers = []
    for worker in description["workers"]:
        rss = peak_rss_bytes(worker["pid"])
        tables = disk_bytes(worker["data_dir"])
        workers.append({
            "worker": worker["name"], "peak_rss_mb": None if rss is None else round(rss / 2**20, 1),
            "tables_mb": round(tables / 2**20, 1), "table_bytes_per_key": round(tables / keys) if keys else None,
        })
    broker = (description.get("embedded") or {}).get("kafka") or {}
    broker_rss = peak_rss_bytes(broker.get("pid"))
    return {"workers": workers, "broker_peak_rss_mb": None if broker_rss is None else round(broker_rss / 2**20, 1)}


def footprint_table(found: dict[str, Any]) -> list[str]:
    lines = [f"    {'worker':<24} {'peak RSS MB':>12} {'tables MB':>10} {'table bytes/key':>16}"]
    for w in found["workers"]:
        lines.append(f"    {w['worker']:<24} {w['peak_rss_mb'] if w['peak_rss_mb'] is not None else '-':>12} "
                     f"{w['tables_mb']:>10} {w['table_bytes_per_key'] if w['table_bytes_per_key'] is not None else '-':>16}")
    lines.append(f"    {'broker':<24} {found['broker_peak_rss_mb'] if found['broker_peak_rss_mb'] is not None else '-':>12}")
    return lines
