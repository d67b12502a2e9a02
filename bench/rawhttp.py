"""A minimal HTTP/1.1 keep-alive client on a raw socket, fast enough to probe in a tight loop.

Only what the prober and the long-lived connections need: GET with a Host header, a
response with Content-Length (or a small chunked body), ``Connection: close`` honoured.
Every way a request can fail is a distinct ``ClientError`` subclass with a ``kind``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


class ClientError(Exception):
    kind = "error"


class ConnectFailed(ClientError):
    kind = "connect"


class Reset(ClientError):
    kind = "reset"


class ClosedIdleKeepalive(ClientError):
    """EOF before any byte of the answer on a connection that already served a request:
    the server closed an idle keep-alive connection as the request went out."""

    kind = "closed_idle_keepalive"


class ClosedBeforeResponse(ClientError):
    kind = "closed_before_response"


class ClosedMidResponse(ClientError):
    kind = "closed_mid_response"


class Timeout(ClientError):
    kind = "timeout"


class BadResponse(ClientError):
    kind = "bad_response"


class Stopped(ClientError):
    kind = "stopped"


@dataclass(frozen=True)
class Response:
    status: int
    backend: str


class KeepAliveClient:
    def __init__(
        self,
        port: int,
        host_header: str,
        *,
        timeout: float = 5.0,
        stop: threading.Event | None = None,
        poll: float = 0.25,
    ) -> None:
        self.port = port
        self.host_header = host_header
        self.timeout = timeout
        self._stop = stop
        self._poll = poll if stop is not None else timeout
        self._sock: socket.socket | None = None
        self._served = 0  # requests answered on the current connection

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        except TimeoutError:
            raise ConnectFailed("connect timed out") from None
        except OSError as exc:
            raise ConnectFailed(str(exc)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._poll)
        self._sock, self._served = sock, 0
        return sock

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        while True:
            try:
                return sock.recv(65536)
            except TimeoutError:
                if self._stop is not None and self._stop.is_set():
                    raise Stopped("stopped") from None
                if time.monotonic() >= deadline:
                    raise Timeout("no answer in time") from None
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Reset(str(exc)) from None
            except OSError as exc:
                raise Reset(str(exc)) from None

    def get(self, path: str = "/", timeout: float | None = None) -> Response:
        """One request; on any ClientError the connection is closed (the next call reconnects)."""
        try:
            return self._get(path, timeout if timeout is not None else self.timeout)
        except ClientError:
            self.close()
            raise

    def _get(self, path: str, timeout: float) -> Response:
        sock = self._sock or self._connect()
        reused = self._served > 0
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: syncer-bench\r\n\r\n".encode()
        try:
            sock.sendall(request)
        except OSError as exc:
            raise (ClosedIdleKeepalive if reused else Reset)(str(exc)) from None
        deadline = time.monotonic() + timeout
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            try:
                chunk = self._recv(sock, deadline)
            except Reset:
                if not buffer and reused:
                    raise ClosedIdleKeepalive("reset before any answer on a reused connection") from None
                raise
            if not chunk:
                if buffer:
                    raise ClosedMidResponse("EOF inside the response head")
                raise (ClosedIdleKeepalive if reused else ClosedBeforeResponse)("EOF before any answer")
            buffer += chunk
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise BadResponse(f"bad status line {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(body) < length:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise ClosedMidResponse("EOF inside the body")
                body += chunk
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise ClosedMidResponse("EOF inside a chunked body")
                body += chunk
        self._served += 1
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers.get("x-backend", ""))
