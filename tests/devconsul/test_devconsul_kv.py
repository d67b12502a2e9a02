"""KV: curl examples from Consul's kv.mdx, CAS, recurse/keys/separator, raw, 404s, blocking."""

from __future__ import annotations

import base64
import time

import requests

from syncer.devconsul import DevConsul


def _kv(dev: DevConsul, key: str) -> str:
    return f"{dev.url}/v1/kv/{key}"


def test_put_get_and_entry_shape(dev: DevConsul, http: requests.Session) -> None:
    # curl --request PUT --data @contents http://127.0.0.1:8500/v1/kv/my-key
    assert http.put(_kv(dev, "my-key?flags=42"), data=b"hello", timeout=5).json() is True
    resp = http.get(_kv(dev, "my-key"), timeout=5)
    [entry] = resp.json()
    assert list(entry) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    assert (entry["Key"], entry["Flags"], base64.b64decode(entry["Value"])) == ("my-key", 42, b"hello")
    assert int(resp.headers["X-Consul-Index"]) == entry["ModifyIndex"]
    raw = http.get(_kv(dev, "my-key?raw"), timeout=5)
    assert (raw.content, raw.headers["Content-Type"]) == (b"hello", "text/plain")
    http.put(_kv(dev, "empty"), data=b"", timeout=5)
    assert http.get(_kv(dev, "empty"), timeout=5).json()[0]["Value"] is None


def test_missing_key_is_404_with_an_index(dev: DevConsul, http: requests.Session) -> None:
    resp = http.get(_kv(dev, "nope"), timeout=5)
    assert (resp.status_code, resp.content) == (404, b"")
    assert int(resp.headers["X-Consul-Index"]) >= 1
    assert http.get(_kv(dev, ""), timeout=5).text == "Missing key name"


def test_recurse_keys_and_separator(dev: DevConsul, http: requests.Session) -> None:
    for key in ("app/a", "app/b/c", "app/b/d", "other"):
        http.put(_kv(dev, key), data=key.encode(), timeout=5)
    entries = http.get(_kv(dev, "app/?recurse"), timeout=5).json()
    assert [e["Key"] for e in entries] == ["app/a", "app/b/c", "app/b/d"]
    assert http.get(_kv(dev, "app/?keys"), timeout=5).json() == ["app/a", "app/b/c", "app/b/d"]
    assert http.get(_kv(dev, "app/?keys&separator=/"), timeout=5).json() == ["app/a", "app/b/"]
    assert http.get(_kv(dev, "zzz/?recurse"), timeout=5).status_code == 404
    assert http.get(f"{dev.url}/v1/kv/?keys", timeout=5).json() == ["app/a", "app/b/c", "app/b/d", "other"]


def test_cas_put_and_delete(dev: DevConsul, http: requests.Session) -> None:
    assert http.put(_kv(dev, "lock?cas=0"), data=b"1", timeout=5).json() is True
    assert http.put(_kv(dev, "lock?cas=0"), data=b"2", timeout=5).json() is False  # exists already
    index = http.get(_kv(dev, "lock"), timeout=5).json()[0]["ModifyIndex"]
    assert http.put(_kv(dev, f"lock?cas={index + 100}"), data=b"3", timeout=5).json() is False
    assert http.put(_kv(dev, f"lock?cas={index}"), data=b"3", timeout=5).json() is True
    index = http.get(_kv(dev, "lock"), timeout=5).json()[0]["ModifyIndex"]
    assert http.delete(_kv(dev, f"lock?cas={index - 1}"), timeout=5).json() is False
    assert http.delete(_kv(dev, f"lock?cas={index}"), timeout=5).json() is True
    conflict = http.put(_kv(dev, "lock?cas=1&acquire=abc"), data=b"", timeout=5)
    assert (conflict.status_code, conflict.text) == (400, "Conflicting flags: acquire=abc&cas=1")


def test_delete_recurse_moves_the_prefix_index(dev: DevConsul, http: requests.Session) -> None:
    http.put(_kv(dev, "app/a"), data=b"1", timeout=5)
    http.put(_kv(dev, "app/b"), data=b"2", timeout=5)
    before = int(http.get(_kv(dev, "app/?recurse"), timeout=5).headers["X-Consul-Index"])
    assert http.delete(_kv(dev, "app/?recurse"), timeout=5).json() is True
    gone = http.get(_kv(dev, "app/?recurse"), timeout=5)
    assert gone.status_code == 404
    assert int(gone.headers["X-Consul-Index"]) > before  # the tombstone keeps the index moving


def test_kv_blocking_is_per_prefix(dev: DevConsul, http: requests.Session) -> None:
    http.put(_kv(dev, "app/a"), data=b"1", timeout=5)
    index = int(http.get(_kv(dev, "app/?recurse"), timeout=5).headers["X-Consul-Index"])
    http.put(_kv(dev, "elsewhere"), data=b"x", timeout=5)
    start = time.monotonic()
    resp = http.get(_kv(dev, "app/"), params={"recurse": "", "index": str(index), "wait": "1s"}, timeout=10)
    assert time.monotonic() - start >= 1.0
    assert int(resp.headers["X-Consul-Index"]) == index
