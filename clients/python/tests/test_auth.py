"""API keys against a real service started with TENSORSHM_API_KEYS: the client sends ``Authorization: Bearer``.

Skipped when the service build in dist/ predates API keys (it then answers /v1 without one).
"""

from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest

import tensorshm
from conftest import run_service

KEY_A = "pytest-key-a-0123456789abcdef"
KEY_B = "pytest-key-b-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed():
    service = run_service(TENSORSHM_API_KEYS=f"{KEY_A},{KEY_B}")
    svc = next(service)
    try:
        try:
            urllib.request.urlopen(f"{svc.url}/v1/segments", timeout=5).close()
            pytest.skip("this build of the service has no API keys (npm run build?)")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        yield svc
    finally:
        for _ in service:  # stops it and runs its exit and /dev/shm checks
            pass


def test_without_a_key_or_with_a_wrong_one_is_unauthorized(keyed):
    for key in (None, "not-a-key-of-this-service"):
        c = tensorshm.Client(keyed.url, api_key=key)
        assert c.health() == {"status": "ok"}, "/healthz needs no key"
        with pytest.raises(tensorshm.Unauthorized) as e:
            c.put({"x": np.ones(2)})
        assert e.value.status == 401 and e.value.code == "TSHM_UNAUTHORIZED"
        with pytest.raises(tensorshm.Unauthorized):
            c.list()


def test_a_namespace_belongs_to_the_key_that_made_it(keyed, monkeypatch):
    a = tensorshm.Client(keyed.url, api_key=KEY_A)
    monkeypatch.setenv("TENSORSHM_API_KEY", KEY_B)
    b = tensorshm.Client(keyed.url)                     # the key from the environment
    d = a.put({"x": np.arange(4), "p": "text"})
    try:
        assert a.get(d)["x"].tolist() == [0, 1, 2, 3] and a.info(d["x"]["name"])["present"]
        with pytest.raises(tensorshm.NotFound):
            b.info(d["x"]["name"])
        with pytest.raises(tensorshm.NotFound):
            b.get(d)
        with pytest.raises(tensorshm.NotFound):
            b.delete(d["x"]["name"])
        assert all(s["name"] != d["x"]["name"] for s in b.list())
        try:
            assert b.release(d.namespace) == 0
        except tensorshm.NotFound:
            pass
        assert a.info(d["x"]["name"])["present"], "b could not release a's segment"
        with a.attach(d["x"]) as arr:                   # attaching is local: the file's permissions decide
            assert arr.tolist() == [0, 1, 2, 3]
    finally:
        assert a.release(d.namespace) == 1
