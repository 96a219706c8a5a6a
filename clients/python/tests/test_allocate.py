"""Client.allocate (the zero-copy producer) and CPU torch tensors in put / allocate / attach / get."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tensorshm
from tensorshm.nos import TensorSpec

from conftest import run_python

CONSUMER = """
import json, sys
import tensorshm
d = json.load(sys.stdin)
with tensorshm.Client(d["url"]).attach(d["desc"], readonly=True) as view:   # reads the view, copies nothing
    print(json.dumps([int(view[0, 0, 0]), int(view[-1, -1, -1]), int(view.sum())]))
"""


def test_allocate_hands_writable_views_a_consumer_reads_without_a_copy(client, python_env):
    with client.allocate({"img": TensorSpec((16, 8, 3), "uint8"), "mask": {"shape": [4], "dtype": "<f4"},
                          "frames": [np.empty((2, 2), np.int16)] * 3}) as a:
        assert isinstance(a.descriptors, tensorshm.PutResult) and a.namespace == a.descriptors.namespace
        img = a["img"]
        assert img.flags.writeable and img.flags.c_contiguous and img.shape == (16, 8, 3)
        assert np.all(img == 0), "fresh segments are zeroed"
        img[...] = 5
        img[0, 0, 0], img[-1, -1, -1] = 1, 9
        a["mask"][:] = [0.5, 1.5, 2.5, 3.5]
        for i, f in enumerate(a["frames"]):
            f[...] = i
        descriptors = dict(a.descriptors)
    assert a.closed and a.arrays == {}
    assert json.loads(json.dumps(descriptors)) == descriptors, "the descriptors are plain JSON"
    out = json.loads(run_python(CONSUMER, {"url": client.url, "desc": descriptors["img"]}, python_env).stdout)
    assert out == [1, 9, 5 * (16 * 8 * 3 - 2) + 10]
    got = client.get(descriptors)
    assert got["mask"].tolist() == [0.5, 1.5, 2.5, 3.5] and [f[0, 0] for f in got["frames"]] == [0, 1, 2]
    assert client.release(a.namespace) == 5


def test_the_view_is_the_segment_itself(client):
    with client.allocate({"x": TensorSpec((1024,), "uint8")}) as a:
        with client.attach(a.descriptors["x"]) as other:
            a["x"][7] = 77
            assert other[7] == 77, "a write through the producer's view is visible through any other mapping"
    client.release(a.namespace)


def test_allocate_refuses_bad_specs_before_allocating_anything(client, torch):
    before = len(client.list())
    cases = [
        ({}, TypeError, "non-empty dict"),
        ([("x", TensorSpec((1,), "uint8"))], TypeError, "non-empty dict"),
        ({"x": []}, TypeError, r"specs\['x'\]: an empty list"),
        ({"x": "uint8"}, TypeError, r"specs\['x'\]: str is not a tensor spec"),
        ({"x": {"shape": [2]}}, TypeError, "needs 'shape' and 'dtype'"),
        ({"x": {"shape": [2, -1], "dtype": "uint8"}}, ValueError, r"specs\['x'\].shape\[1\]: -1 is negative"),
        ({"x": {"shape": [None], "dtype": "uint8"}}, ValueError, "dynamic dimension"),
        ({"x": {"shape": ["2"], "dtype": "uint8"}}, TypeError, "is not an integer"),
        ({"x": {"shape": [2], "dtype": "object"}}, TypeError, "cannot live in a tensorshm segment"),
        ({"x": {"shape": [2], "dtype": torch.bfloat16}}, TypeError, "bfloat16 has no numpy equivalent"),
        ({"x": [TensorSpec((1,), "uint8"), "no"]}, TypeError, r"specs\['x'\]\[1\]"),
        ({"x": torch.empty(3, device="meta")}, TypeError, "a meta tensor; segments are host memory"),
    ]
    for specs, exc, message in cases:
        with pytest.raises(exc, match=message):
            client.allocate(specs)
    assert len(client.list()) == before


def test_torch_round_trips_without_copies(client, torch):
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    d = client.put({"t": t, "many": [torch.ones(2, dtype=torch.int64), torch.zeros(1, dtype=torch.bool)], "n": 1})
    assert d["t"]["dtype"] == "float32" and d["n"] == 1
    got = client.get(d, as_torch=True)
    assert isinstance(got["t"], torch.Tensor) and torch.equal(got["t"], t)
    assert [x.dtype for x in got["many"]] == [torch.int64, torch.bool]
    with client.attach(d["t"], as_torch=True) as view:
        assert isinstance(view, torch.Tensor) and torch.equal(view, t)
        view[0, 0] = 100.0                                          # lands in the segment
    with client.attach(d["t"]) as arr:
        assert arr[0, 0] == 100.0
        shared = torch.from_numpy(arr)
        assert shared.data_ptr() == arr.ctypes.data
        att = client.attach(d["t"])
        assert att.tensor.data_ptr() != 0 and torch.equal(att.tensor, shared)
        att.close()
    with client.allocate({"x": {"shape": [2, 3], "dtype": torch.float16}, "y": torch.empty(4, dtype=torch.int32)}) as a:
        assert isinstance(a["x"], torch.Tensor) and a["x"].dtype == torch.float16 and a["x"].shape == (2, 3)
        assert isinstance(a["y"], torch.Tensor) and a["y"].dtype == torch.int32
        a["x"].fill_(1.5)
        a["y"].copy_(torch.tensor([1, 2, 3, 4], dtype=torch.int32))
    again = client.get(a.descriptors)
    assert again["x"].dtype == np.float16 and np.all(again["x"] == 1.5) and again["y"].tolist() == [1, 2, 3, 4]
    client.release(d.namespace)
    client.release(a.namespace)


def test_torch_tensors_that_cannot_be_copied_as_they_are_are_a_clear_type_error(client, torch):
    before = len(client.list())
    for value, message in [
        (torch.arange(6).reshape(2, 3).T, r"arrays\['x'\]: a non-contiguous tensor .*tensor.contiguous\(\)"),
        (torch.empty(3, device="meta"), r"arrays\['x'\]: a meta tensor; .* tensor.cpu\(\)"),
        (torch.zeros(2, dtype=torch.bfloat16), "bfloat16 has no numpy equivalent"),
        ([torch.zeros(2), torch.zeros(4)[::2]], r"arrays\['x'\]\[1\]: a non-contiguous"),
        ([torch.zeros(2), "text"], "mixes arrays or tensors with other values"),
    ]:
        with pytest.raises(TypeError, match=message):
            client.put({"x": value})
    assert len(client.list()) == before
    d = client.put({"x": torch.zeros(2, requires_grad=True)})        # autograd history is dropped, not refused
    with pytest.raises(ValueError, match="readonly=True and as_torch=True"):
        client.attach(d["x"], readonly=True, as_torch=True)
    client.release(d.namespace)


def test_nos_objects_take_torch_tensors(client, torch):
    from tensorshm.nos import MismatchError, SharedMemoryTransportManager
    m = SharedMemoryTransportManager(client)
    shm_map = m.create({"x": TensorSpec((2, 2), torch.float32)}, namespace="torch/nos")
    SharedMemoryTransportManager.copy(shm_map, {"x": torch.eye(2)})
    assert shm_map["x"].get().tolist() == [[1, 0], [0, 1]]
    with pytest.raises(MismatchError):
        shm_map["x"].copy_from(torch.eye(3))
    with pytest.raises(TypeError, match="non-contiguous"):
        shm_map["x"].copy_from(torch.arange(8.).reshape(2, 4)[:, ::2])
    m.cleanup()


def test_the_client_needs_neither_torch_nor_nos(client, python_env):
    code = """
import json, sys
sys.modules["torch"] = None            # import torch now fails, as where it is not installed
import numpy as np
import tensorshm, tensorshm.nos
req = json.load(sys.stdin)
c = tensorshm.Client(req["url"])
with c.allocate({"x": tensorshm.nos.TensorSpec((3,), "uint8")}) as a:
    a["x"][:] = 3
d = c.put({"y": np.ones(2)})
ok = c.get(a.descriptors)["x"].tolist() == [3, 3, 3] and c.get(d)["y"].tolist() == [1.0, 1.0]
try:
    c.attach(d["y"], as_torch=True)
    err = None
except ImportError as e:
    err = str(e)
c.release(a.namespace); c.release(d.namespace)
print(json.dumps([ok, err, "torch" in sys.modules and sys.modules["torch"] is not None]))
"""
    ok, err, imported = json.loads(run_python(code, {"url": client.url}, python_env).stdout)
    assert ok and not imported
    assert err and "needs torch installed" in err
