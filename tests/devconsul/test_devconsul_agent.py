"""Agent endpoints: registration defaults, checks, TTL updates, maintenance, error bodies."""

from __future__ import annotations

from collections.abc import Callable

import requests

from syncer.devconsul import DevConsul


def _put(http: requests.Session, dev: DevConsul, path: str, body: object = None) -> requests.Response:
    return http.put(f"{dev.url}{path}", json=body, timeout=5)


def test_registration_defaults_match_consul(dev: DevConsul, http: requests.Session) -> None:
    resp = _put(http, dev, "/v1/agent/service/register", {"Name": "api", "Port": 9000, "Check": {"TTL": "10s"}})
    assert resp.status_code == 200
    assert resp.content == b""  # Consul answers an empty 200
    services = http.get(f"{dev.url}/v1/agent/services", timeout=5).json()
    assert services == {
        "api": {
            "ID": "api",  # the ID defaults to the name
            "Service": "api",
            "Tags": [],
            "Meta": {},
            "Port": 9000,
            "Address": "",
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Datacenter": "dc1",
        }
    }
    check = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:api"]
    assert check["Status"] == "critical"  # a new check starts critical
    assert check["Name"] == "Service 'api' check"
    assert check["Type"] == "ttl"
    assert check["ServiceID"] == "api"


def test_lower_case_and_snake_case_keys_are_accepted(dev: DevConsul, http: requests.Session) -> None:
    body = {
        "name": "api",
        "id": "api-1",
        "address": "10.1.1.1",
        "port": 81,
        "tags": ["a"],
        "meta": {"Version": "2"},
        "enable_tag_override": True,
        "weights": {"passing": 5, "warning": 2},
        "tagged_addresses": {"lan": {"address": "10.1.1.1", "port": 81}},
        "checks": [{"ttl": "10s", "status": "passing"}],
    }
    assert _put(http, dev, "/v1/agent/service/register", body).status_code == 200
    svc = http.get(f"{dev.url}/v1/agent/service/api-1", timeout=5).json()
    assert svc["Meta"] == {"Version": "2"}
    assert svc["EnableTagOverride"] is True
    assert svc["Weights"] == {"Passing": 5, "Warning": 2}
    # An IPv4 service address gets lan_ipv4/wan_ipv4 tagged addresses, as the agent adds them.
    assert set(svc["TaggedAddresses"]) == {"lan", "lan_ipv4", "wan_ipv4"}
    assert http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:api-1"]["Status"] == "passing"


def test_check_ids_for_several_checks(dev: DevConsul, http: requests.Session) -> None:
    body = {"Name": "db", "Checks": [{"TTL": "10s"}, {"TTL": "10s"}, {"CheckID": "custom", "TTL": "5s"}]}
    assert _put(http, dev, "/v1/agent/service/register", body).status_code == 200
    assert set(http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()) == {"service:db:1", "service:db:2", "custom"}


def test_replace_existing_checks(dev: DevConsul, http: requests.Session) -> None:
    body = {"Name": "db", "Checks": [{"CheckID": "a", "TTL": "10s"}, {"CheckID": "b", "TTL": "10s"}]}
    _put(http, dev, "/v1/agent/service/register", body)
    _put(http, dev, "/v1/agent/service/register", {"Name": "db", "Check": {"CheckID": "a", "TTL": "10s"}})
    assert set(http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()) == {"a", "b"}
    _put(
        http,
        dev,
        "/v1/agent/service/register?replace-existing-checks",
        {"Name": "db", "Check": {"CheckID": "a", "TTL": "10s"}},
    )
    assert set(http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()) == {"a"}


def test_reregistration_keeps_check_status(dev: DevConsul, http: requests.Session) -> None:
    _put(http, dev, "/v1/agent/service/register", {"Name": "db", "Check": {"TTL": "10s"}})
    _put(http, dev, "/v1/agent/check/pass/service:db")
    _put(http, dev, "/v1/agent/service/register", {"Name": "db", "Check": {"TTL": "10s"}})
    assert http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:db"]["Status"] == "passing"


def test_ttl_updates_and_their_errors(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    assert _put(http, dev, "/v1/agent/check/warn/service:web1?note=slow").status_code == 200
    check = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:web1"]
    assert (check["Status"], check["Output"]) == ("warning", "slow")
    assert _put(http, dev, "/v1/agent/check/update/service:web1", {"Status": "critical", "Output": "down"}).ok
    assert http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:web1"]["Status"] == "critical"

    missing = _put(http, dev, "/v1/agent/check/pass/nope")
    assert missing.status_code == 404
    assert missing.text == 'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'
    bad = _put(http, dev, "/v1/agent/check/update/service:web1", {"Status": "maybe"})
    assert (bad.status_code, bad.text) == (400, "Invalid check status: 'maybe'")
    wrong_method = http.get(f"{dev.url}/v1/agent/check/pass/service:web1", timeout=5)
    assert (wrong_method.status_code, wrong_method.text) == (405, "method GET not allowed")
    assert wrong_method.headers["Allow"] == "OPTIONS,PUT"


def test_non_ttl_check_refuses_ttl_updates(dev: DevConsul, http: requests.Session) -> None:
    body = {"Name": "web", "Check": {"TCP": "127.0.0.1:1", "Interval": "30s"}}
    assert _put(http, dev, "/v1/agent/service/register", body).status_code == 200
    resp = _put(http, dev, "/v1/agent/check/pass/service:web")
    assert (resp.status_code, resp.text) == (500, 'CheckID "service:web" does not have associated TTL')


def test_deregister_and_its_404(register_web: Callable[..., None], dev: DevConsul, http: requests.Session) -> None:
    register_web()
    assert _put(http, dev, "/v1/agent/service/deregister/web1").status_code == 200
    assert http.get(f"{dev.url}/v1/agent/services", timeout=5).json() == {}
    assert http.get(f"{dev.url}/v1/agent/checks", timeout=5).json() == {}
    again = _put(http, dev, "/v1/agent/service/deregister/web1")
    assert again.status_code == 404
    assert again.text == ('Unknown service ID "web1". Ensure that the service ID is passed, not the service name.')
    unknown = http.get(f"{dev.url}/v1/agent/service/web1", timeout=5)
    assert (unknown.status_code, unknown.text) == (404, "unknown service ID: web1")


def test_bad_bodies_answer_400_like_consul(dev: DevConsul, http: requests.Session) -> None:
    cases = [
        ("{", "Request decode failed: unexpected EOF"),
        ("", "Request decode failed: EOF"),
        (
            '{"Port": "80", "Name": "x"}',
            "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port "
            "of type int",
        ),
        ("{}", "Missing service name"),
        ('{"Name": "x", "Address": "0.0.0.0"}', "Invalid service address"),
        ('{"Name": "x", "Weights": {"Passing": 0}}', "Invalid Weights: Passing must be greater than 0"),
        ('{"Name": "x", "Check": {"Interval": "10s", "HTTP": ""}}', "Invalid check: TTL must be > 0 for TTL checks"),
        (
            '{"Name": "x", "Meta": {"consul-x": "1"}}',
            "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): "
            "Key prefix 'consul-' is reserved for internal use",
        ),
    ]
    for body, text in cases:
        resp = http.put(f"{dev.url}/v1/agent/service/register", data=body, timeout=5)
        assert (resp.status_code, resp.text) == (400, text), body
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_check_register_and_deregister(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    body = {"Name": "mem", "ServiceID": "web1", "TTL": "10s", "Status": "warning"}
    assert _put(http, dev, "/v1/agent/check/register", body).status_code == 200
    assert http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["mem"]["Status"] == "warning"
    missing = _put(http, dev, "/v1/agent/check/register", {"Name": "x", "ServiceID": "nope", "TTL": "1s"})
    assert (missing.status_code, missing.text) == (404, 'ServiceID "nope" does not exist')
    assert _put(http, dev, "/v1/agent/check/deregister/mem").status_code == 200
    assert "mem" not in http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()


def test_service_maintenance_adds_a_critical_check(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    assert _put(http, dev, "/v1/agent/service/maintenance/web1?enable=true&reason=deploy").status_code == 200
    check = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["_service_maintenance:web1"]
    assert (check["Status"], check["Notes"], check["Name"]) == ("critical", "deploy", "Service Maintenance Mode")
    assert http.get(f"{dev.url}/v1/health/service/web?passing", timeout=5).json() == []
    assert _put(http, dev, "/v1/agent/service/maintenance/web1?enable=false").status_code == 200
    assert len(http.get(f"{dev.url}/v1/health/service/web?passing", timeout=5).json()) == 1
    bad = _put(http, dev, "/v1/agent/service/maintenance/web1?enable=maybe")
    assert (bad.status_code, bad.text) == (400, 'Invalid value for enable: "maybe"')


def test_agent_self_is_minimal_but_shaped(dev: DevConsul, http: requests.Session) -> None:
    info = http.get(f"{dev.url}/v1/agent/self", timeout=5).json()
    assert info["Config"]["Datacenter"] == "dc1"
    assert info["Config"]["NodeName"] == "dev-node"
    assert info["Member"]["Name"] == "dev-node"
