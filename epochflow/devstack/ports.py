"""Free loopback ports for the embedded stack's listeners, and whether one is listened on.

Ports are taken below the kernel's ephemeral range: a port handed out by `bind(0)` comes
from that range, where any outgoing connection (a Kafka client, a database client) may take
it before the listener binds it again, for instance when a crashed worker restarts on its
assigned web port, and the listener would then fail to start for good.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FALLBACK_RANGE = (32768, 60999)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return _FALLBACK_RANGE


def free_port() -> int:
    """A loopback TCP port below the ephemeral range that nobody listens on now."""
    low, _ = _ephemeral_range()
    top = max(low - 1, 11000)
    for _ in range(200):
        port = random.randint(10000, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # crowded: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
