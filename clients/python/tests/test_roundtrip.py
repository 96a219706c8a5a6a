"""put -> attach and put -> get return every supported array bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tensorshm

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
    ">i2", ">i4", ">i8", ">u2", ">u4", ">u8", ">f2", ">f4", ">f8", ">c8", ">c16",
]


def random_array(dtype, shape, seed=0) -> np.ndarray:
    """Random bytes of ``dtype`` (NaN payloads, infinities and subnormals included); bools are 0 or 1."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_bit_exact(client, dtype):
    a = random_array(dtype, (3, 5, 2), seed=len(dtype))
    d = client.put({"a": a})
    try:
        assert d["a"]["dtype"] == str(np.dtype(dtype)), "the service answers numpy's canonical dtype"
        assert d["a"]["shape"] == [3, 5, 2] and d["a"]["nbytes"] == a.nbytes
        with client.attach(d["a"]) as view:
            assert same_bits(view, a)
            assert view.dtype.byteorder == a.dtype.byteorder
        got = client.get(d)["a"]
        assert same_bits(got, a)
        assert same_bits(client.get(d["a"]), a)
    finally:
        assert client.release(d.namespace) == 1


def test_lists_of_images_and_passthrough_values(client):
    images = [random_array("uint8", (480, 640, 3), seed=i) for i in range(4)]
    masks = (random_array("bool", (480, 640), seed=9), random_array("bool", (480, 640), seed=10))
    nested = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    d = client.put({"images": images, "masks": masks, "prompt": "a cat", "n": 2 ** 70, "nested": nested,
                    "none": None, "empty": [], "ints": [1, 2, 3], "raw": b"\x00\xff"})
    try:
        assert isinstance(d["images"], list) and len(d["images"]) == 4
        assert isinstance(d["masks"], list) and len(d["masks"]) == 2
        assert d["prompt"] == "a cat" and d["nested"] is nested and d["ints"] == [1, 2, 3] and d["raw"] == b"\x00\xff"
        for desc, img in zip(d["images"], images):
            with client.attach(desc) as view:
                assert same_bits(view, img)
        got = client.get(d)
        assert list(got) == list(d), "the keys keep their order"
        assert all(same_bits(g, i) for g, i in zip(got["images"], images))
        assert all(same_bits(g, m) for g, m in zip(got["masks"], masks))
        assert got["prompt"] == "a cat" and got["n"] == 2 ** 70 and got["nested"] == nested
        assert got["none"] is None and got["empty"] == [] and got["ints"] == [1, 2, 3] and got["raw"] == b"\x00\xff"
    finally:
        assert client.release(d.namespace) == 6


def test_a_descriptor_dict_from_json_or_another_process_works_as_is(client):
    a = random_array("float32", (7, 3))
    d = client.put({"a": a, "bs": [a[:2], a[2:]], "prompt": "a cat"})
    try:
        plain = json.loads(json.dumps(d))
        assert plain == dict(d)
        got = client.get(plain)
        assert same_bits(got["a"], a) and same_bits(got["bs"][1], a[2:]) and got["prompt"] == "a cat"
        assert [x.tolist() for x in client.get(plain["bs"])] == [a[:2].tolist(), a[2:].tolist()], "a list of them"
        assert type(__import__("pickle").loads(__import__("pickle").dumps(d))) is dict
    finally:
        client.release(d.namespace)


def test_nos_image_sizes(client):
    image = random_array("uint8", (1620, 2880, 3), seed=1)   # NOS's image size
    batch = random_array("uint8", (8, 480, 640, 3), seed=2)
    d = client.put({"image": image, "batch": batch, "frames": list(batch)})
    try:
        with client.attach(d["image"]) as view:
            assert view.shape == (1620, 2880, 3) and same_bits(view, image)
        with client.attach(d["batch"]) as view:
            assert same_bits(view, batch)
        got = client.get(d)
        assert same_bits(got["image"], image) and same_bits(got["batch"], batch)
        assert all(same_bits(f, b) for f, b in zip(got["frames"], batch))
    finally:
        assert client.release(d.namespace) == 10


@pytest.mark.parametrize("dtype", ["uint8", "float64", ">c16", "bool"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0, 2), ()])
def test_zero_size_and_zero_d_arrays(client, dtype, shape):
    a = random_array(dtype, shape, seed=3)
    d = client.put({"a": a, "l": [a, a]})
    try:
        assert d["a"]["nbytes"] == a.nbytes
        with client.attach(d["a"]) as view:
            assert same_bits(view, a)
        got = client.get(d)
        assert same_bits(got["a"], a) and all(same_bits(x, a) for x in got["l"])
    finally:
        client.release(d.namespace)


def test_non_contiguous_input(client):
    base = random_array(">f8", (12, 10, 4), seed=4)
    cases = {
        "strided": base[::2, 1::3],
        "transposed": base.transpose(2, 0, 1),
        "fortran": np.asfortranarray(base),
        "reversed": base[::-1, :, ::-1],
        "broadcast": np.broadcast_to(base[0], (5, 10, 4)),
        "column": base[:, 3, 1],
        "unaligned": np.frombuffer(b"\x00" + base.tobytes(), dtype=">f8", offset=1).reshape(base.shape),
    }
    assert not any(v.flags.c_contiguous for k, v in cases.items() if k not in ("column", "unaligned"))
    d = client.put(cases)
    try:
        got = client.get(d)
        for key, src in cases.items():
            want = np.ascontiguousarray(src)
            with client.attach(d[key]) as view:
                assert view.flags.c_contiguous and same_bits(view, want), key
            assert same_bits(got[key], want), key
    finally:
        client.release(d.namespace)


def test_writes_through_a_view_are_what_get_returns(client):
    d = client.put({"a": np.zeros((4, 4), np.int32)})
    try:
        with client.attach(d["a"]) as view:
            view[1:3, 1:3] = 7
        want = np.zeros((4, 4), np.int32)
        want[1:3, 1:3] = 7
        assert same_bits(client.get(d["a"]), want)
    finally:
        client.release(d.namespace)


def test_put_without_arrays_allocates_nothing(client):
    before = len(client.list(client.client_id))
    d = client.put({"prompt": "only text", "empty": []})
    assert dict(d) == {"prompt": "only text", "empty": []} and d.expires_at is None
    assert client.get(d) == {"prompt": "only text", "empty": []}
    assert len(client.list(client.client_id)) == before


def test_default_namespace_is_per_client_and_unique(client, service):
    a, b = client.put({"x": np.ones(2)}), client.put({"x": np.ones(2)})
    other = tensorshm.Client(service.url)
    c = other.put({"x": np.ones(2)})
    try:
        assert a.namespace.startswith(client.client_id + "/") and b.namespace.startswith(client.client_id + "/")
        assert a.namespace != b.namespace and not c.namespace.startswith(client.client_id + "/")
        assert client.client_id != other.client_id
        assert client.release(client.client_id) == 2, "the client id is a namespace of its own"
    finally:
        other.release(c.namespace)
