"""``syncer dev-consul``: run the stand-in from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from syncer.devconsul.acl import TOKENS_FILE_ENV, read_tokens_file
from syncer.devconsul.dns_answer import DnsConfig
from syncer.devconsul.server import DevConsul

DESCRIPTION = (
    "Run dev-consul, an in-memory DEVELOPMENT STAND-IN for a Consul agent's HTTP API. "
    "It is NOT Consul and must not replace one: no Raft, no gossip, no persistence, "
    "one node. It exists for syncer's demo, tests and benchmark."
)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _dns_listen(value: str) -> tuple[str, int] | None:
    return None if value == "" else _listen(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not 0 <= seconds < 2**31:
        raise argparse.ArgumentTypeError(f"a TTL must be 0 or more seconds, got {value!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 8500),
        metavar="HOST:PORT",
        help="address to serve the HTTP API on (default: 127.0.0.1:8500)",
    )
    parser.add_argument(
        "--dns-listen",
        type=_dns_listen,
        default=("127.0.0.1", 8600),
        metavar="HOST:PORT",
        help='address to serve Consul\'s DNS interface on, UDP and TCP (default: 127.0.0.1:8600; "" turns it off)',
    )
    parser.add_argument(
        "--dns-service-ttl",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help='TTL of service answers, like dns_config { service_ttl { "*" = ... } } (default: 0)',
    )
    parser.add_argument(
        "--dns-node-ttl",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="TTL of node answers, like dns_config.node_ttl (default: 0)",
    )
    parser.add_argument(
        "--acl-token-file",
        metavar="PATH",
        default=os.environ.get(TOKENS_FILE_ENV),
        help="enable ACLs (default policy deny); PATH holds one management token per line. "
        f"Defaults to ${TOKENS_FILE_ENV}. Tokens are never taken from the command line.",
    )
    parser.add_argument(
        "--http-max-conns-per-client",
        type=int,
        default=200,
        metavar="N",
        help="concurrent TCP connections allowed per client IP, like Consul's "
        "http_max_conns_per_client (default: 200; 0 disables)",
    )
    parser.add_argument("--node-name", default="dev-node", help="the agent's node name (default: dev-node)")
    parser.add_argument("--datacenter", default="dc1", help="the datacenter name (default: dc1)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default: INFO; DEBUG logs every request)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens: list[str] = []
    if args.acl_token_file:
        try:
            tokens = read_tokens_file(args.acl_token_file)
        except OSError as exc:
            logging.getLogger("syncer.devconsul").error("cannot read ACL token file: %s", exc)
            return 2
        if not tokens:
            logging.getLogger("syncer.devconsul").error("ACL token file %s holds no token", args.acl_token_file)
            return 2
    host, port = args.listen
    dev = DevConsul(
        host,
        port,
        acl_tokens=tokens,
        max_conns_per_client=args.http_max_conns_per_client,
        node_name=args.node_name,
        datacenter=args.datacenter,
        dns_listen=args.dns_listen,
        dns_config=DnsConfig(
            service_ttl={"*": args.dns_service_ttl} if args.dns_service_ttl else {}, node_ttl=args.dns_node_ttl
        ),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        dev.start()
    except OSError as exc:
        logging.getLogger("syncer.devconsul").error("cannot listen on %s:%d or its DNS address: %s", host, port, exc)
        return 1
    acl_note = f"ACLs on ({len(tokens)} management token(s), default deny)" if tokens else "ACLs off"
    dns_note = f"DNS on {dev.dns.address} (udp, tcp)" if dev.dns is not None else "DNS off"
    print(f"dev-consul (a development stand-in, not Consul) serving {dev.url}; {dns_note}; {acl_note}", flush=True)
    try:
        stop.wait()
    finally:
        dev.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev-consul")
    add_arguments(parser)
    return run(parser.parse_args(argv))
