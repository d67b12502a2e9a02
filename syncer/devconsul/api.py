"""Transport-free core of the HTTP API: requests in, responses out, routing, shared headers."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from syncer.devconsul.acl import ACL, Authorizer, parse_token
from syncer.devconsul.agent import LocalAgent
from syncer.devconsul.bexpr import Field, Filter, FilterError
from syncer.devconsul.blocking import DEFAULT_WAIT, MAX_WAIT, QueryOptions, effective_wait, first, with_jitter
from syncer.devconsul.encoding import go_json
from syncer.devconsul.errors import HTTPError, MethodNotAllowed, RPCError
from syncer.devconsul.faults import FaultSet
from syncer.devconsul.state import ClientGone, Store

T = TypeVar("T")
log = logging.getLogger("syncer.devconsul.api")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    client: str = "127.0.0.1"
    cancelled: Callable[[], bool] = lambda: False
    nonblocking: bool = False  # set by the "empty" fault: answer at once

    @property
    def token(self) -> str:
        return parse_token(self.query, self.headers)

    def param(self, name: str) -> str:
        return first(self.query, name)

    def has(self, name: str) -> bool:
        return name in self.query


@dataclass
class Response:
    status: int = 200
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["Api", Call], Response]


@dataclass(frozen=True)
class Route:
    pattern: str  # ends with "/" for a prefix route, like Go's ServeMux
    methods: tuple[str, ...]
    handler: Handler


class Api:
    """Everything an endpoint needs: the store, the local agent, ACLs, faults, settings."""

    def __init__(
        self,
        store: Store,
        agent: LocalAgent,
        acl: ACL,
        faults: FaultSet,
        *,
        default_wait: float = DEFAULT_WAIT,
        max_wait: float = MAX_WAIT,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.agent = agent
        self.acl = acl
        self.faults = faults
        self.default_wait = default_wait
        self.max_wait = max_wait
        self.rng = rng or random.Random()
        self.routes: list[Route] = []
        self.stats_provider: Callable[[], dict[str, Any]] = dict

    @property
    def datacenter(self) -> str:
        return self.agent.datacenter

    def route(self, pattern: str, methods: tuple[str, ...], handler: Handler) -> None:
        self.routes.append(Route(pattern, methods, handler))
        self.routes.sort(key=lambda r: len(r.pattern), reverse=True)  # longest pattern wins

    def dispatch(self, call: Call) -> Response:
        for route in self.routes:
            exact = route.pattern == call.path
            if exact or (route.pattern.endswith("/") and call.path.startswith(route.pattern)):
                return self._wrap(route, call)
        return index_page(call.path)

    def _wrap(self, route: Route, call: Call) -> Response:
        common = {"X-Consul-Default-ACL-Policy": self.acl.default_policy}
        if call.method == "OPTIONS" and route.methods:
            return Response(200, headers={**common, "Allow": ",".join(["OPTIONS", *route.methods])})
        try:
            if route.methods and call.method not in route.methods:
                raise MethodNotAllowed(call.method, list(route.methods))
            response = route.handler(self, call)
        except HTTPError as exc:
            response = error_response(exc)
        except ClientGone:
            raise
        except Exception as exc:  # a bug here must still answer, like Go's default 500
            log.exception("%s %s failed", call.method, call.path)
            response = error_response(HTTPError(500, str(exc) or type(exc).__name__))
        for name, value in common.items():
            response.headers.setdefault(name, value)
        return response

    # Helpers for endpoints -------------------------------------------------------------------
    def authorize(self, call: Call) -> Authorizer:
        return self.acl.resolve(call.token)

    def check_dc(self, call: Call) -> None:
        dc = call.param("dc")
        if dc and dc != self.datacenter:
            raise RPCError("No path to datacenter")

    def json(self, call: Call, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(status, go_json(obj, pretty=call.has("pretty")), "application/json", dict(headers or {}))

    def compile_filter(self, expression: str, schema: Field) -> Filter:
        try:
            return Filter(expression, schema)
        except FilterError as exc:
            raise RPCError(str(exc)) from None

    def block(
        self, call: Call, opts: QueryOptions, run: Callable[[], tuple[int, T]], watch: Callable[[str], bool]
    ) -> tuple[int, T]:
        """Run a blocking query: answer once the resource index passes ``?index`` or the wait ends."""
        timeout = 0.0
        if opts.blocking and not call.nonblocking:
            timeout = with_jitter(effective_wait(opts.wait, self.default_wait, self.max_wait), self.rng)
        return self.store.block(run, lambda r: r[0] > opts.min_index, watch, timeout, call.cancelled)

    def meta_headers(
        self, index: int, opts: QueryOptions | None = None, consistency: bool = True, cached: bool = False
    ) -> dict[str, str]:
        """setMeta: index (never 0), known leader, last contact, consistency, backend."""
        headers = {
            "X-Consul-Index": str(max(index, 1)),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Query-Backend": "blocking-query",
        }
        if consistency and opts is not None:
            headers["X-Consul-Effective-Consistency"] = opts.consistency
        if cached and opts is not None and opts.cached:
            headers["X-Cache"] = "MISS"
        return headers


def error_response(exc: HTTPError) -> Response:
    # Go's net/http sniffs a text body as text/plain; charset=utf-8.
    return Response(exc.status, exc.reason.encode("utf-8"), "text/plain; charset=utf-8", dict(exc.headers))


def index_page(path: str) -> Response:
    """HTTPHandlers.Index for paths no endpoint claims."""
    if path == "/":
        text = (
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart."
        )
        return Response(200, text.encode(), "text/plain; charset=utf-8")
    if "/v1/" in path:
        text = "Invalid URL path: not a recognized HTTP API endpoint\n"
    else:
        text = "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    return Response(404, text.encode(), "text/plain; charset=utf-8")


_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip


def parse_go_bool(raw: str) -> bool | None:
    """Go's strconv.ParseBool: the spellings it accepts, None for anything else."""
    return _GO_BOOLS.get(raw)


def bool_param(call: Call, name: str, error: str) -> bool:
    """getBoolQueryParam: present without value means true, else strconv.ParseBool."""
    if not call.has(name):
        return False
    raw = call.param(name)
    if raw == "":
        return True
    value = parse_go_bool(raw)
    if value is None:
        raise HTTPError(400, error)
    return value
