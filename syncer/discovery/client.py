"""The Consul HTTP client: py-consul's transport, with every header a watcher needs.

py-consul's endpoint helpers return only ``(index, data)``; blocking-query rules also need
``X-Consul-KnownLeader``, ``X-Consul-LastContact`` and the status code, so queries go
through py-consul's HTTP client (its session, TLS and blocking-aware timeouts) with a
callback that keeps the whole answer. The token travels in a header, never in the URL,
and its value is cut out of every error text this client produces.

TLS as Consul's client does it: ``CONSUL_TLS_SERVER_NAME`` is the name sent as SNI and
checked on the certificate; ``CONSUL_CAPATH`` is a directory whose every certificate is
trusted (and only those), used when no CA file is given.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consul
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from syncer.config import ConsulSettings
from syncer.discovery.blocking import format_wait, query_index
from syncer.logs import REDACTED

MAX_BODY = 64 * 1024 * 1024  # a health answer larger than this is not something we parse


class ConsulError(Exception):
    """A query that produced no usable answer. ``status`` is None for transport errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    index: int | None
    body: Any
    known_leader: bool | None
    last_contact_ms: int | None
    filtered_by_acls: bool


@dataclass(frozen=True)
class _Raw:
    code: int
    headers: Any
    body: str


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, e.g. "[Errno 111] Connection refused".

    requests wraps urllib3's MaxRetryError, which wraps the real error, whose text repeats
    the pool and the whole URL: one operator-facing line should say only what went wrong.
    """
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 10:  # the chains are short; never loop on a cyclic one
        text = str(current).strip() or type(current).__name__
        pooled = text.startswith(("HTTPConnectionPool(", "HTTPSConnectionPool("))
        texts.append(text.split(": ", 1)[1] if pooled else text)
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = inner or current.__cause__ or current.__context__
    # the socket's bare "timed out" says less than urllib3's "Read timed out. (read timeout=5)"
    return texts[-2] if texts[-1] == "timed out" and len(texts) > 1 else texts[-1]


def _describe(code: int, body: str) -> str:
    text = body.strip().splitlines()[0][:200] if body.strip() else ""
    if code == 429:
        return f"429 Too Many Requests from Consul (connection cap or rate limit): {text}"
    if code == 403:
        return f"403 from Consul, the token lacks permission: {text}"
    return f"{code} from Consul: {text}"


def ca_path_context(directory: Path) -> ssl.SSLContext:
    """An SSL context trusting every certificate in ``directory`` and nothing else, as
    Consul's rootcerts.LoadCAPath does (any file names; OpenSSL's capath would want hashes)."""
    context = create_urllib3_context()
    loaded = 0
    for path in sorted(directory.iterdir()):
        if path.is_file():
            try:
                context.load_verify_locations(cafile=str(path))
            except ssl.SSLError as exc:
                raise ConsulError(f"CONSUL_CAPATH {directory}: {path.name} is not a PEM certificate: {exc}") from None
            loaded += 1
    if not loaded:
        raise ConsulError(f"CONSUL_CAPATH {directory} holds no certificate")
    return context


class ConsulAdapter(HTTPAdapter):
    """The shared, capped pool, plus the TLS details requests has no argument for."""

    def __init__(self, settings: ConsulSettings) -> None:
        self._server_name = settings.tls_server_name
        use_ca_path = settings.ca_path is not None and settings.ca_file is None and settings.verify
        self._context = ca_path_context(settings.ca_path) if use_ca_path and settings.ca_path else None
        super().__init__(pool_connections=1, pool_maxsize=settings.max_connections, pool_block=True, max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        extra: dict[str, Any] = {}
        if host_params.get("scheme") == "https":
            if self._server_name:
                extra["server_hostname"] = self._server_name  # SNI
                extra["assert_hostname"] = self._server_name  # and the name the certificate must carry
            if self._context is not None and verify is not False:
                extra["ssl_context"] = self._context
        return host_params, {**pool_kwargs, **extra}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if self._context is not None and verify is True:
            conn.ca_certs = None  # trust CONSUL_CAPATH's certificates only, not also certifi's
            conn.ca_cert_dir = None


class ConsulClient:
    def __init__(self, settings: ConsulSettings) -> None:
        self.settings = settings
        verify: bool | str = str(settings.ca_file) if settings.ca_file else settings.verify
        cert = (str(settings.cert_file), str(settings.key_file)) if settings.cert_file else None
        # token=None: we set the header ourselves (py-consul would prefer CONSUL_HTTP_TOKEN
        # over an explicit token, which breaks "flags win"). host: bracketed for IPv6, as
        # py-consul puts it into the URL unchanged.
        self._consul = consul.Consul(
            host=settings.url_host,
            port=settings.port,
            scheme=settings.scheme,
            verify=verify,
            cert=cert,
            dc=settings.datacenter,
            connections_timeout=settings.connect_timeout,
        )
        # One pool shared by every watch, blocking when full: the hard cap on how many
        # connections this agent holds to Consul.
        adapter = ConsulAdapter(settings)
        session: requests.Session = self._consul.http.session
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if settings.auth is not None:
            session.auth = settings.auth  # CONSUL_HTTP_AUTH: HTTP basic auth, as Consul's client
        self._headers = {"X-Consul-Token": settings.token} if settings.token else {}
        self._secrets = tuple(s for s in (settings.token, settings.auth[1] if settings.auth else None) if s)

    @property
    def base_url(self) -> str:
        port = self.settings.port
        return f"{self.settings.scheme}://{self.settings.url_host}:{port}"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _get(self, path: str, params: list[tuple[str, Any]]) -> _Raw:
        if self.settings.consistency != "default":
            params.append((self.settings.consistency, "1"))
        if self.settings.datacenter:
            params.append(("dc", self.settings.datacenter))
        if self.settings.namespace:
            params.append(("ns", self.settings.namespace))
        if self.settings.partition:
            params.append(("partition", self.settings.partition))
        try:
            raw: _Raw = self._consul.http.get(
                lambda r: _Raw(r.code, r.headers, r.body), path, params=params, headers=dict(self._headers)
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = self._redact(_reason(exc))
            raise ConsulError(f"Consul at {self.base_url} unreachable: {type(exc).__name__}: {reason}") from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            reason = self._redact(_reason(exc))
            raise ConsulError(
                f"Consul at {self.base_url} sent a broken answer: {type(exc).__name__}: {reason}"
            ) from None
        except (requests.RequestException, UnicodeError, ValueError) as exc:
            # Not the network: the request could not be built (a header the HTTP library
            # refuses, say). Its text may quote the header: never pass it on unredacted.
            reason = self._redact(_reason(exc))
            raise ConsulError(f"request to Consul at {self.base_url} refused before sending: {reason}") from None
        return raw

    def _blocking(self, path: str, index: int, wait: float, params: list[tuple[str, Any]]) -> Answer:
        sent = query_index(index)
        if sent is not None:
            params = [("index", sent), ("wait", format_wait(wait)), *params]
        raw = self._get(path, params)
        if raw.code != 200:
            raise ConsulError(self._redact(_describe(raw.code, raw.body)), status=raw.code)
        if len(raw.body) > MAX_BODY:
            raise ConsulError(f"answer from {path} is {len(raw.body)} bytes, over the {MAX_BODY} limit")
        try:
            body = json.loads(raw.body)
        except ValueError as exc:
            raise ConsulError(
                self._redact(f"answer from {path} is not JSON: {exc}; starts {raw.body[:80]!r}")
            ) from None
        leader = raw.headers.get("X-Consul-KnownLeader")
        return Answer(
            index=_int_header(raw.headers, "X-Consul-Index"),
            body=body,
            known_leader=None if leader is None else leader.lower() == "true",
            last_contact_ms=_int_header(raw.headers, "X-Consul-LastContact"),
            filtered_by_acls=raw.headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true",
        )

    def health_service(self, name: str, index: int = 0, wait: float = 300.0, passing: bool = True) -> Answer:
        params: list[tuple[str, Any]] = [("passing", "1")] if passing else []
        return self._blocking(f"/v1/health/service/{name}", index, wait, params)

    def catalog_services(self, index: int = 0, wait: float = 300.0) -> Answer:
        return self._blocking("/v1/catalog/services", index, wait, [])

    def close(self) -> None:
        self._consul.http.session.close()

    # --- KV (issue 11): one recursive blocking read of the gray-rules prefix ---------------

    def kv_recurse(self, prefix: str, index: int = 0, wait: float = 300.0) -> Answer:
        """``GET /v1/kv/<prefix>?recurse``. Consul answers 404 for a prefix with no keys,
        still with ``X-Consul-Index``: that is an empty list, and the next read blocks on it."""
        sent = query_index(index)
        params: list[tuple[str, Any]] = [("recurse", "1")]
        if sent is not None:
            params = [("index", sent), ("wait", format_wait(wait)), *params]
        raw = self._get(f"/v1/kv/{prefix}", params)
        if raw.code == 404:  # Consul sets its meta headers on this answer too
            filtered = raw.headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true"
            return Answer(_int_header(raw.headers, "X-Consul-Index"), [], None, None, filtered)
        if raw.code != 200:
            raise ConsulError(_describe(raw.code, raw.body), status=raw.code)
        if len(raw.body) > MAX_BODY:
            raise ConsulError(f"answer from /v1/kv/{prefix} is {len(raw.body)} bytes, over the {MAX_BODY} limit")
        try:
            body = json.loads(raw.body)
        except ValueError as exc:
            raise ConsulError(f"answer from /v1/kv/{prefix} is not JSON: {exc}") from exc
        return Answer(
            index=_int_header(raw.headers, "X-Consul-Index"),
            body=body,
            known_leader=None,
            last_contact_ms=None,
            filtered_by_acls=raw.headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true",
        )

    # --- the change detectors and the liveness probe (the multiplexed watcher) ------------

    def health_state(self, index: int = 0, wait: float = 300.0) -> Answer:
        """``/v1/health/state/any``: every check in the datacenter; its index is the checks table's."""
        return self._blocking("/v1/health/state/any", index, wait, [])

    def checks_index(self, timeout: float) -> int | None:
        """The liveness probe: the checks table's index, on its own short timeout.

        ``/v1/health/state/critical`` filtered to nothing: a tiny answer whose
        ``X-Consul-Index`` is the same table index the check detector blocks on. Any HTTP
        answer means Consul is alive (None when it refused us the index, e.g. an ACL);
        only no answer at all raises. An index below the detector's means Consul restarted
        or restored a snapshot while the detector sat in a blocking query that, on the new
        state, would not return until its wait ran out.
        """
        http = self._consul.http
        params = [("filter", 'CheckID == "syncer-liveness-probe"')]
        try:
            response = http.session.get(
                http.uri("/v1/health/state/critical", params),
                headers=dict(self._headers),
                verify=http.verify,
                cert=http.cert,
                timeout=timeout,
            )
        except requests.RequestException as exc:
            reason = self._redact(_reason(exc))
            raise ConsulError(f"Consul at {self.base_url} unreachable: {type(exc).__name__}: {reason}") from None
        if response.status_code != 200:
            return None
        return _int_header(response.headers, "X-Consul-Index")

    # --- config entries (traffic steering, docs/routing.md) ------------------------------
    def config_entries(self, kind: str, index: int = 0, wait: float = 300.0) -> Answer:
        """``GET /v1/config/<kind>``: every entry of one kind, ``[]`` when none; blocking."""
        return self._blocking(f"/v1/config/{kind}", index, wait, [])
