"""DevConsul: the in-process server object (tests, demo, benchmark) and its TCP plumbing.

The listener counts open connections per client IP like Consul's
``http_max_conns_per_client`` (hashicorp/go-connlimit): a connection past the cap is
answered at once with the 429 bytes and closed, before any request is read.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from syncer.devconsul import endpoints_agent, endpoints_catalog, endpoints_config, endpoints_dev, endpoints_kv
from syncer.devconsul.acl import ACL
from syncer.devconsul.agent import LocalAgent
from syncer.devconsul.api import Api
from syncer.devconsul.blocking import DEFAULT_WAIT, MAX_WAIT
from syncer.devconsul.dns import DnsServer
from syncer.devconsul.dns_answer import Answerer, DnsConfig
from syncer.devconsul.faults import FaultSet
from syncer.devconsul.http import CONNLIMIT_RESPONSE, DevConsulHandler
from syncer.devconsul.state import Store

log = logging.getLogger("syncer.devconsul")


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], dev: DevConsul) -> None:
        self.dev = dev
        super().__init__(address, DevConsulHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.dev._admit(request, client_address[0]):
            threading.Thread(target=_reject, args=(request,), daemon=True).start()
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.dev._release(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def _reject(sock: socket.socket) -> None:
    """Write go-connlimit's 429 and close; drain a little first so the client can read it."""
    try:
        sock.sendall(CONNLIMIT_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.5)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        sock.close()


class DevConsul:
    """An in-memory stand-in for a Consul agent's HTTP API (development and tests only)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        acl_tokens: Iterable[str] = (),
        max_conns_per_client: int = 200,
        node_name: str = "dev-node",
        datacenter: str = "dc1",
        default_wait: float = DEFAULT_WAIT,
        max_wait: float = MAX_WAIT,
        check_update_interval: float = 300.0,
        register_consul_service: bool = True,
        seed: int | None = None,
        dns_listen: tuple[str, int] | None = None,
        dns_config: DnsConfig | None = None,
    ) -> None:
        """``dns_listen``: serve Consul's DNS interface there too (UDP and TCP; port 0 picks
        a free one); None, the default for in-process use, serves no DNS."""
        self.host = host
        self._requested_port = port
        self.max_conns_per_client = max_conns_per_client
        self.store = Store()
        self.agent = LocalAgent(
            self.store,
            node_name=node_name,
            address="127.0.0.1",
            datacenter=datacenter,
            check_update_interval=check_update_interval,
            register_consul_service=register_consul_service,
        )
        self.faults = FaultSet(on_change=self.store.kick, on_reset_index=self.store.reset_index)
        self.api = Api(
            self.store,
            self.agent,
            ACL(acl_tokens),
            self.faults,
            default_wait=default_wait,
            max_wait=max_wait,
            rng=random.Random(seed),
        )
        for module in (endpoints_agent, endpoints_catalog, endpoints_kv, endpoints_config, endpoints_dev):
            module.register(self.api)
        self.api.stats_provider = self.stats
        self._conns: dict[str, set[Any]] = {}
        self._conn_lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._rejected = 0
        self._listener: _Listener | None = None
        self._thread: threading.Thread | None = None
        self.dns: DnsServer | None = None
        if dns_listen is not None:
            acl = self.api.acl
            answerer = Answerer(
                self.store,
                dns_config or DnsConfig(),
                datacenter,
                acl_denies=lambda: acl.enabled,
                rng=random.Random(seed),
            )
            self.dns = DnsServer(answerer, *dns_listen)

    # Lifecycle ---------------------------------------------------------------------------------
    def start(self) -> DevConsul:
        if self._listener is not None:
            raise RuntimeError("DevConsul already started")
        self._listener = _Listener((self.host, self._requested_port), self)
        self.agent.boot()
        self._thread = threading.Thread(
            target=self._listener.serve_forever, kwargs={"poll_interval": 0.05}, name="devconsul-http", daemon=True
        )
        self._thread.start()
        if self.dns is not None:
            try:
                self.dns.start()
            except OSError:
                self.stop()
                raise
        log.info("dev-consul listening on %s", self.url)
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if self.dns is not None:
            self.dns.stop()
        listener.shutdown()
        self.store.close()
        self.agent.stop()
        with self._conn_lock:
            open_conns = [c for conns in self._conns.values() for c in conns]
        for conn in open_conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        listener.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DevConsul:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Addresses --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("DevConsul is not started")
        return int(self._listener.server_address[1])

    @property
    def address(self) -> str:
        """``host:port``, as CONSUL_HTTP_ADDR wants it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # Connection accounting (go-connlimit) -------------------------------------------------------
    def _admit(self, sock: Any, ip: str) -> bool:
        with self._conn_lock:
            conns = self._conns.setdefault(ip, set())
            if self.max_conns_per_client > 0 and len(conns) >= self.max_conns_per_client:
                self._rejected += 1
                return False
            conns.add(sock)
            return True

    def _release(self, sock: Any) -> None:
        with self._conn_lock:
            for ip, conns in list(self._conns.items()):
                conns.discard(sock)
                if not conns:
                    del self._conns[ip]

    def connections_by_client(self) -> dict[str, int]:
        """Open TCP connections per client IP right now."""
        with self._conn_lock:
            return {ip: len(conns) for ip, conns in self._conns.items()}

    # Counters -----------------------------------------------------------------------------------
    def count_request(self, method: str, path: str, status: int) -> None:
        with self._conn_lock:
            self._requests[f"{method} {path}"] += 1
            self._statuses[status] += 1

    def stats(self) -> dict[str, Any]:
        with self._conn_lock:
            requests = dict(sorted(self._requests.items()))
            statuses = {str(k): v for k, v in sorted(self._statuses.items())}
            rejected = self._rejected
        return {
            "connections": self.connections_by_client(),
            "rejected_connections": rejected,
            "requests": requests,
            "statuses": statuses,
            "blocking_queries": self.store.waiting,
            "index": self.store.raft_index,
        }
