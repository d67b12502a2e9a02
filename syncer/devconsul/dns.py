"""dev-consul's DNS interface: Consul's answers (``dns_answer``) over UDP and TCP on one port.

Like a Consul agent (default ``127.0.0.1:8600``): UDP for ordinary queries, TCP (two-byte
length prefix, several queries per connection) for clients that retry a truncated answer or
want the whole list. A malformed datagram is dropped; a malformed TCP message closes the
connection, as miekg/dns does.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import socketserver
import struct
import threading
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode

from syncer.devconsul.dns_answer import Answerer, Transport

log = logging.getLogger("syncer.devconsul.dns")
DEFAULT_DNS_PORT = 8600
_TCP_IDLE = 8.0  # miekg/dns closes an idle TCP connection after 8 s


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def _respond(answerer: Answerer, wire: bytes, transport: Transport, answered: _Counter) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        log.debug("dropping a malformed %s DNS message (%d bytes)", transport, len(wire))
        return None
    if query.flags & dns.flags.QR:
        return None  # a response sent to us: never answer it (no reflection loops)
    answered.add()
    try:
        response = answerer.answer(query, transport)
        return response.to_wire(max_size=65535)
    except Exception:  # one broken answer must not take the listener down
        log.exception("DNS query %s failed", query.question)
        failure = dns.message.make_response(query)
        failure.set_rcode(dns.rcode.SERVFAIL)
        return failure.to_wire()


class _UDPHandler(socketserver.BaseRequestHandler):
    server: _UDPServer

    def handle(self) -> None:
        data, sock = self.request
        reply = _respond(self.server.answerer, data, "udp", self.server.answered)
        if reply is not None:
            with contextlib.suppress(OSError):
                sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(_TCP_IDLE)
        with contextlib.suppress(OSError):
            while not self.server.closing.is_set():
                header = _read_exactly(sock, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                wire = _read_exactly(sock, length)
                if wire is None:
                    return
                reply = _respond(self.server.answerer, wire, "tcp", self.server.answered)
                if reply is None:
                    return
                sock.sendall(struct.pack("!H", len(reply)) + reply)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], answerer: Answerer, answered: _Counter) -> None:
        self.address_family = _family(address[0])
        self.answerer = answerer
        self.answered = answered
        super().__init__(address, _UDPHandler)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], answerer: Answerer, answered: _Counter) -> None:
        self.address_family = _family(address[0])
        self.answerer = answerer
        self.answered = answered
        self.closing = threading.Event()
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _TCPHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("DNS TCP connection from %s ended with an error", client_address, exc_info=True)


class DnsServer:
    """UDP and TCP listeners on the same host and port, answering with one ``Answerer``."""

    def __init__(self, answerer: Answerer, host: str = "127.0.0.1", port: int = DEFAULT_DNS_PORT) -> None:
        self.answerer = answerer
        self.host = host
        self._requested_port = port
        self._udp: _UDPServer | None = None
        self._tcp: _TCPServer | None = None
        self._threads: list[threading.Thread] = []
        self._answered = _Counter()

    @property
    def queries(self) -> int:
        """Queries answered so far (UDP and TCP)."""
        return self._answered.value

    def start(self) -> DnsServer:
        if self._udp is not None:
            raise RuntimeError("DNS server already started")
        # With port 0 the kernel picks a free UDP port; TCP must then get the same number,
        # which another process may hold: try a few.
        for attempt in range(20):
            udp = _UDPServer((self.host, self._requested_port), self.answerer, self._answered)
            try:
                tcp = _TCPServer((self.host, int(udp.server_address[1])), self.answerer, self._answered)
            except OSError as exc:
                udp.server_close()
                if self._requested_port != 0 or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
                continue
            self._udp, self._tcp = udp, tcp
            break
        for name, server in (("udp", self._udp), ("tcp", self._tcp)):
            assert server is not None
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"devconsul-dns-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("dev-consul DNS listening on %s (udp and tcp)", self.address)
        return self

    @property
    def port(self) -> int:
        if self._udp is None:
            raise RuntimeError("DNS server is not started")
        return int(self._udp.server_address[1])

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def stop(self) -> None:
        udp, tcp, self._udp, self._tcp = self._udp, self._tcp, None, None
        if tcp is not None:
            tcp.closing.set()
            tcp.shutdown()
            with tcp._lock:
                open_conns = list(tcp.connections)
            for conn in open_conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            tcp.server_close()
        if udp is not None:
            udp.shutdown()
            udp.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
