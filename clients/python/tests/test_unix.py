"""The client over the service's Unix socket: ``unix:///path`` in ``Client(url=...)`` and ``TENSORSHM_URL``."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest

import tensorshm
from conftest import SHM, run_python, run_service, wait_until


@pytest.fixture(scope="module")
def local():
    """A service with a Unix socket (TCP too, for the conftest's health check), in a directory of its own."""
    with tempfile.TemporaryDirectory(prefix="tensorshm-sock-") as d:
        path = os.path.join(d, "tensorshm.sock")
        for svc in run_service(TENSORSHM_SOCKET=path):
            svc.socket = path
            yield svc


@pytest.fixture()
def uclient(local):
    with tensorshm.Client(f"unix://{local.socket}", timeout=30) as c:
        yield c


def test_a_round_trip_over_the_socket_gives_the_caller_its_own_0600_segments(uclient):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = uclient.put({"a": a})
    try:
        st = os.stat(SHM / d["a"]["name"])
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600
        assert np.array_equal(uclient.get(d["a"]), a)
        assert uclient.list(d.namespace)[0]["name"] == d["a"]["name"]
        assert uclient.health()["status"] == "ok"
    finally:
        assert uclient.release(d.namespace) == 1


def test_tensorshm_url_may_name_the_socket(local, monkeypatch):
    monkeypatch.setenv("TENSORSHM_URL", f"unix://{local.socket}")
    with tensorshm.Client() as c:
        assert c.url == f"unix://{local.socket}"
        d = c.put({"x": np.ones(3)})
        assert c.release(d) == 1


def test_nos_code_runs_over_the_socket(local, monkeypatch):
    from tensorshm.nos import SharedMemoryTransportManager, TensorSpec
    monkeypatch.setenv("TENSORSHM_URL", f"unix://{local.socket}")
    manager = SharedMemoryTransportManager()
    shm_map = manager.create({"img": TensorSpec((2, 3), "uint8")}, namespace="nos-unix")
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    manager.copy(shm_map, {"img": img})
    st = os.stat(SHM / shm_map["img"].name)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600, "the caller's own file, as for put"
    assert (shm_map["img"].get() == img).all()
    manager.cleanup("nos-unix")
    assert not (SHM / shm_map["img"].name).exists()


def test_sharing_with_a_group_by_name(uclient):
    import grp
    group = grp.getgrgid(os.getegid()).gr_name
    d = uclient.put({"x": np.ones(2)}, share_group=group, share_access="read-write")
    try:
        st = os.stat(SHM / d["x"]["name"])
        assert st.st_gid == os.getegid() and stat.S_IMODE(st.st_mode) == 0o660
    finally:
        uclient.release(d)
    with pytest.raises(ValueError, match="no group named"):
        uclient.put({"x": np.ones(2)}, share_group="no-such-group-anywhere")


def test_allocate_shares_as_put_does(uclient):
    import grp
    group = grp.getgrgid(os.getegid()).gr_name
    with uclient.allocate({"x": {"shape": [4], "dtype": "uint8"}}, share_group=group) as a:
        a["x"][:] = 7
        d = a.descriptors
    try:
        st = os.stat(SHM / d["x"]["name"])
        assert st.st_gid == os.getegid() and stat.S_IMODE(st.st_mode) == 0o640
    finally:
        uclient.release(d)


def test_release_on_exit_releases_the_namespace_when_the_process_exits(uclient, local, python_env):
    code = (
        "import json, sys, numpy as np, tensorshm\n"
        "c = tensorshm.Client(sys.argv[1] if len(sys.argv) > 1 else json.load(sys.stdin))\n"
        "d = c.put({'x': np.arange(4)}, release_on_exit=True)\n"
        "print(json.dumps({'ns': d.namespace, 'name': d['x']['name']}))\n"
    )
    out = run_python(code, f"unix://{local.socket}", python_env)
    made = __import__("json").loads(out.stdout)
    wait_until(lambda: not (SHM / made["name"]).exists(), timeout=2, what="the namespace to go with its process")
    assert uclient.list(made["ns"]) == []


def test_release_on_exit_over_tcp_is_refused(local):
    with tensorshm.Client(local.url) as c:
        with pytest.raises(tensorshm.BadRequest) as e:
            c.put({"x": np.ones(1)}, release_on_exit=True)
        assert e.value.code == "TSHM_LOCAL_CALLER_REQUIRED"


@pytest.mark.parametrize("url", ["unix://host/run/x.sock", "unix:relative.sock", "unix:///run/x.sock?q=1"])
def test_malformed_unix_urls_are_refused(url):
    with pytest.raises(ValueError, match="unix:///absolute/path"):
        tensorshm.Client(url)


def test_a_missing_socket_is_unreachable(tmp_path):
    with tensorshm.Client(f"unix://{tmp_path}/none.sock", timeout=2) as c:
        with pytest.raises(tensorshm.ConnectionError) as e:
            c.health()
        assert f"unix://{tmp_path}/none.sock" in str(e.value)

