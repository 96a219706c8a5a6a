"""Leases, renewal, expiry, release by namespace, listing, and cleanup when put fails half-way."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

import tensorshm
import tensorshm.client
from conftest import SHM, wait_until


def gone(client, name) -> bool:
    try:
        client.info(name)
        return False
    except tensorshm.NotFound:
        return True


def test_renewal_keeps_a_segment_past_its_first_lease(client):
    d = client.put({"x": np.arange(3)}, ttl=2)
    try:
        renewed = client.renew(d.namespace, ttl=60)
        assert renewed["renewed"] == 1 and renewed["namespace"] == d.namespace and renewed["expires_at"]
        time.sleep(3)  # past the first lease; the sweeper runs every 0.2 s
        info = client.info(d["x"]["name"])
        assert info["present"] is True and info["ttl_seconds"] == 60
        assert client.get(d["x"]).tolist() == [0, 1, 2]
        assert client.renew(d, 30)["renewed"] == 1, "a PutResult stands for its namespace"
        assert client.renew(f"{d.namespace}-nothing-here")["renewed"] == 0
    finally:
        client.release(d.namespace)


def test_expiry_reclaims_the_segment(client):
    d = client.put({"x": np.arange(3), "l": [np.ones(2)]}, ttl=1)
    name = d["x"]["name"]
    assert d.expires_at is not None
    wait_until(lambda: gone(client, name), timeout=30, what="the sweeper to reclaim an expired segment")
    wait_until(lambda: not (SHM / name).exists(), timeout=10, what="the file to be unlinked")
    with pytest.raises(tensorshm.NotFound) as e:
        client.get(d)
    assert e.value.status == 404 and e.value.code == "TSHM_SEGMENT_NOT_FOUND"
    with pytest.raises(tensorshm.NotFound, match="released or expired") as e:
        client.attach(d["x"])
    assert e.value.status is None and e.value.code == "TSHM_SEGMENT_NOT_FOUND"
    assert client.release(d.namespace) == 0


def test_ttl_zero_means_no_expiry(client):
    d = client.put({"x": np.arange(3)}, ttl=0)
    try:
        assert d.expires_at is None and client.info(d["x"]["name"])["expires_at"] is None
    finally:
        client.release(d)


def test_release_by_namespace_respects_slash_boundaries(client):
    base = f"pytest-{uuid.uuid4().hex[:8]}"
    for ns in (f"{base}/a", f"{base}/a/b", f"{base}/a/b/c", f"{base}/ab", f"{base}/a.b"):
        client.put({"x": np.zeros(1), "y": [np.zeros(1), np.zeros(2)]}, namespace=ns)
    assert len(client.list(base)) == 15
    assert {s["namespace"] for s in client.list(f"{base}/a")} == {f"{base}/a", f"{base}/a/b", f"{base}/a/b/c"}
    assert client.release(f"{base}/a/b") == 6
    assert client.release(f"{base}/a") == 3, "a, not ab or a.b"
    assert client.release(f"{base}/a") == 0
    assert sorted({s["namespace"] for s in client.list(base)}) == [f"{base}/a.b", f"{base}/ab"]
    assert client.release(base) == 6
    assert client.list(base) == []


def test_list_info_and_delete(client):
    d = client.put({"x": np.zeros((2, 3), np.float32), "imgs": [np.zeros(4, np.uint8), np.zeros(5, np.uint8)]})
    try:
        listed = {s["name"]: s for s in client.list(d.namespace)}
        assert set(listed) == {d["x"]["name"], d["imgs"][0]["name"], d["imgs"][1]["name"]}
        x = client.info(d["x"]["name"])
        assert {k: x[k] for k in ("name", "shape", "dtype", "nbytes")} == d["x"]
        assert x["namespace"] == d.namespace and x["key"] == "x" and x["present"] is True
        assert listed[d["imgs"][1]["name"]]["index"] == 1
        client.delete(d["x"]["name"])
        assert gone(client, d["x"]["name"]) and not (SHM / d["x"]["name"]).exists()
        with pytest.raises(tensorshm.NotFound):
            client.delete(d["x"]["name"])
        assert client.release(d.namespace) == 2
    finally:
        client.release(d.namespace)


def test_a_failed_put_releases_what_it_allocated(client, monkeypatch):
    calls = []
    real = tensorshm.client._write

    def flaky(descriptor, src, where):
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk on fire")
        real(descriptor, src, where)

    ns = f"pytest-{uuid.uuid4().hex[:8]}"
    kept = client.put({"keep": np.ones(3)}, namespace=ns)
    monkeypatch.setattr(tensorshm.client, "_write", flaky)
    with pytest.raises(OSError, match="disk on fire"):
        client.put({"a": np.ones(3), "b": [np.ones(2), np.ones(2)], "c": np.ones(1)}, namespace=ns)
    assert calls == ["a", "b[0]"]
    assert [s["key"] for s in client.list(ns)] == ["keep"], "only the failed put's segments were released"
    assert client.release(kept) == 1


def test_all_or_nothing_and_duplicate_keys(client):
    d = client.put({"x": np.ones(3)})
    try:
        with pytest.raises(tensorshm.Conflict) as e:
            client.put({"y": np.ones(3), "x": np.ones(3)}, namespace=d.namespace)
        assert e.value.status == 409 and e.value.code == "TSHM_DUPLICATE_KEY"
        assert [s["key"] for s in client.list(d.namespace)] == ["x"], "y was not allocated either"
    finally:
        client.release(d.namespace)
