"""attach: zero-copy views, other processes, the resource tracker, close(), and files that are too short."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import weakref

import numpy as np
import pytest

import tensorshm
from tensorshm import _shm
from conftest import SHM, run_python

CHILD_READS = """
import hashlib, json, sys
import tensorshm
d = json.load(sys.stdin)
with tensorshm.Client(d["url"]).attach(d["desc"]) as a:
    h = hashlib.sha256(a.tobytes()).hexdigest()
    a[0, 0, 0] = 42                       # and leaves a mark for the parent
print(json.dumps({"sha256": h, "python": sys.version_info[:2]}))
"""


def test_another_process_attaches_and_the_segment_outlives_it(client, python_env):
    img = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    d = client.put({"img": img})
    name = d["img"]["name"]
    try:
        out = run_python(CHILD_READS, {"url": client.url, "desc": d["img"]}, python_env)
        assert json.loads(out.stdout)["sha256"] == hashlib.sha256(img.tobytes()).hexdigest()
        assert tuple(json.loads(out.stdout)["python"]) == sys.version_info[:2]
        assert "leaked shared_memory" not in out.stderr, out.stderr
        # The child has exited: had it registered the segment with its resource tracker, the file would be gone.
        assert (SHM / name).exists(), "the child's resource tracker unlinked the service's segment"
        assert client.info(name)["present"] is True
        with client.attach(d["img"]) as a:
            assert a[0, 0, 0] == 42, "the child's write is visible here: same memory"
        assert client.get(d["img"])[0, 0, 0] == 42
    finally:
        client.release(d.namespace)


def test_the_resource_tracker_hazard_is_real_here(client, python_env):
    """What attach avoids: plain SharedMemory(name) on this Python unlinks the segment when the process exits.

    This shows the test above would catch a client that let the tracker register the segment (gh-82300).
    """
    d = client.put({"victim": np.zeros(16, np.uint8)})
    name = d["victim"]["name"]
    try:
        run_python("import json, sys\nfrom multiprocessing import shared_memory\n"
                   "s = shared_memory.SharedMemory(name=json.load(sys.stdin))\ns.close()\n", name, python_env)
        assert not (SHM / name).exists(), f"Python {sys.version_info[:2]}: the tracker did not unlink; gh-82300 fixed?"
    finally:
        client.release(d.namespace)


def test_attach_in_this_process_starts_no_resource_tracker(client, python_env):
    d = client.put({"x": np.arange(10)})
    try:
        out = run_python(
            "import json, sys, tensorshm\nfrom multiprocessing import resource_tracker as rt\n"
            "d = json.load(sys.stdin)\nwith tensorshm.Client(d['url']).attach(d['x']) as a: s = int(a.sum())\n"
            "print(json.dumps([s, rt._resource_tracker._fd is None]))\n",
            {"url": client.url, "x": d["x"]}, python_env)
        assert json.loads(out.stdout) == [45, True]
    finally:
        client.release(d.namespace)


def test_close_with_and_without_live_views(client, monkeypatch):
    # The mapping cache keeps mappings on purpose (test_kept_mappings); here, what close() does without it.
    _shm.forget_mappings()
    monkeypatch.setattr(_shm._cache, "entries", 0)
    d = client.put({"x": np.arange(6.0).reshape(2, 3)})
    try:
        att = client.attach(d["x"])
        assert att.name == d["x"]["name"] and not att.closed
        assert att.close() is True, "no view alive: unmapped at once"
        assert att.closed and att.close() is True, "idempotent"
        with pytest.raises(ValueError, match="closed"):
            att.array

        att = client.attach(d["x"])
        view = att.array[1]                    # a view that outlives the attachment
        mapping = weakref.ref(att._mmap)
        assert att.close() is False, "a live view: the mapping is left to it"
        assert att.close() is True and att.closed, "idempotent, and nothing is left to this attachment"
        assert mapping() is not None and not mapping().closed
        assert view.tolist() == [3.0, 4.0, 5.0], "the view stays valid"
        view *= 2                              # and writable, into the segment
        assert client.get(d["x"])[1].tolist() == [6.0, 8.0, 10.0]
        del view
        gc.collect()
        assert mapping() is None, "the mapping goes with the last view"

        with client.attach(d["x"]) as arr:
            total = arr.sum()
        assert total == 27.0 and arr[1, 2] == 10.0, "after a with block, the bound array still reads"
        ref = weakref.ref(arr)
        del arr
        gc.collect()
        assert ref() is None
    finally:
        client.release(d.namespace)


def test_readonly_attach(client):
    d = client.put({"x": np.arange(4, dtype=np.int16)})
    try:
        with client.attach(d["x"], readonly=True) as a:
            assert a.tolist() == [0, 1, 2, 3] and not a.flags.writeable
            with pytest.raises(ValueError):
                a[0] = 1
    finally:
        client.release(d.namespace)


def test_a_truncated_segment_is_refused_before_mapping(client):
    d = client.put({"x": np.ones((256, 256), np.float32), "z": np.ones((0, 4), np.float32)})
    try:
        os.truncate(SHM / d["x"]["name"], 1000)
        with pytest.raises(tensorshm.SegmentTruncated, match="1000 bytes long but its tensor needs 262144") as e:
            client.attach(d["x"])
        assert e.value.code == "TSHM_SEGMENT_TRUNCATED" and e.value.status is None
        with pytest.raises(tensorshm.SegmentTruncated) as e:
            client.get(d)
        assert e.value.status == 409 and e.value.code == "TSHM_SEGMENT_TRUNCATED"
        assert isinstance(e.value, tensorshm.Conflict)

        os.truncate(SHM / d["z"]["name"], 0)    # a zero-size tensor's one-byte file, emptied
        with pytest.raises(tensorshm.SegmentTruncated):
            client.attach(d["z"])
    finally:
        client.release(d.namespace)


@pytest.mark.parametrize("bad, error, match", [
    ({"dtype": "object"}, TypeError, "cannot live"),
    ({"dtype": "U4"}, TypeError, "cannot live"),
    ({"dtype": "datetime64[s]"}, TypeError, "cannot live"),
    ({"dtype": "not a dtype"}, TypeError, "not a numpy dtype"),
    ({"dtype": None}, TypeError, "not a dtype string"),
    ({"nbytes": 5}, ValueError, "nbytes"),
    ({"shape": [-1, 2]}, ValueError, "shape"),
    ({"shape": "2,2"}, ValueError, "shape"),
    ({"name": "../etc/passwd"}, ValueError, "name"),
    ({"name": ""}, ValueError, "name"),
])
def test_attach_checks_the_descriptor(client, bad, error, match):
    d = client.put({"x": np.zeros((2, 2), np.float64)})
    try:
        with pytest.raises(error, match=match):
            client.attach({**d["x"], **bad})
    finally:
        client.release(d.namespace)
    with pytest.raises(TypeError, match="descriptor"):
        client.attach({"name": "x"})


def test_kept_mappings_follow_the_inode_not_the_name(client):
    """The service recycles a released segment for the same client under a new name: it comes back mapped."""
    _shm.forget_mappings()
    ns = client.new_namespace().split("/")[0]
    first = client.put({"img": np.full((64, 64, 3), 1, np.uint8)}, namespace=f"{ns}/a")
    att = client.attach(first["img"])
    kept = att._mmap
    assert att.array[0, 0, 0] == 1
    att.close()
    assert not kept.closed, "kept for reuse"
    inode = os.stat(f"{SHM}/{first['img']['name']}").st_ino
    client.release(first.namespace)
    second = client.put({"img": np.full((64, 64, 3), 2, np.uint8)}, namespace=f"{ns}/b")
    assert second["img"]["name"] != first["img"]["name"]
    att = client.attach(second["img"])
    assert att.array[0, 0, 0] == 2, "the new tensor's bytes"
    recycled = os.stat(f"{SHM}/{second['img']['name']}").st_ino == inode
    assert recycled, "the service recycled the released file for the same client"
    assert att._mmap is kept, "and this process still had it mapped"
    att.close()
    with pytest.raises(tensorshm.NotFound):    # a kept mapping never answers for a name that is gone
        client.attach(first["img"])
    client.release(ns)
    client.close()
    assert not _shm._cache._maps, "Client.close unmaps what no array uses"
    assert kept.closed
