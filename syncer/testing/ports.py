"""Loopback port allocation for tests and benchmarks.

The kernel may hand the same ephemeral port to two ``bind(0)`` calls in a row once the
first socket is closed, so ports given out here are remembered and never given twice
by one process; ``free_ports`` also keeps every socket open until all are chosen.
Another process can still take a port before the caller binds it: harnesses that start
many servers retry with fresh ports (``bench.ports.start_with_fresh_ports``).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading

_given: collections.deque[int] = collections.deque(maxlen=8192)
_lock = threading.Lock()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel just handed out on ``host``."""
    with contextlib.ExitStack() as stack, _lock:
        ports: list[int] = []
        for _ in range(count * 20):
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in _given:
                ports.append(port)
        if len(ports) < count:
            raise OSError(f"could not find {count} distinct free ports on {host}")
        _given.extend(ports)
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host``, never one this process had before."""
    return free_ports(1, host)[0]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
