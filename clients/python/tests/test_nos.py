"""tensorshm.nos: NOS's flow end to end against the real service, and the differences that matter."""

from __future__ import annotations

import gc
import json
import pickle

import numpy as np
import pytest

import tensorshm
from tensorshm.nos import (MismatchError, SharedMemoryDataDict, SharedMemoryNumpyObject,
                           SharedMemoryTransportManager, TensorSpec, TransportMismatch)

from conftest import SHM, run_python, wait_until
from nos_standin import STANDIN

SPECS = {"images": [TensorSpec((2, 4, 3), "uint8")] * 2, "mask": TensorSpec((5,), np.float32), "prompt": "a cat"}


def inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": [rng.integers(0, 256, (2, 4, 3), dtype=np.uint8) for _ in range(2)],
            "mask": rng.random(5, dtype=np.float32), "prompt": "a cat"}


@pytest.fixture()
def manager(client):
    m = SharedMemoryTransportManager(client)
    yield m
    m.cleanup()


def names(shm_map: dict) -> list:
    return [o.name for v in shm_map.values() for o in (v if isinstance(v, list) else [v])]


# A decoder in another process: NOS's per-key pickles on stdin (hex), the decoded dict's checksums on stdout.
DECODE_CHILD = """
import json, pickle, sys
from tensorshm.nos import SharedMemoryDataDict
import tensorshm
req = json.load(sys.stdin)
perkey = {k: bytes.fromhex(v) for k, v in req["perkey"].items()}
client = tensorshm.Client(req["url"]) if req["via_service"] else None
out = SharedMemoryDataDict.decode(perkey, client=client)
print(json.dumps({k: [a.tolist() for a in v] if isinstance(v, list) else v if isinstance(v, str) else v.tolist()
                  for k, v in out.items()}))
# and exits without cleanup: nothing may unlink the service's segments
"""


@pytest.mark.parametrize("via_service", [False, True])
def test_nos_flow_create_copy_dumps_decode_in_another_process(client, service, manager, python_env, via_service):
    shm_map = manager.create(dict(SPECS), namespace="nos-client/obj-1")
    assert sorted(shm_map) == ["images", "mask"], "non-tensor values are skipped, as NOS does"
    assert isinstance(shm_map["images"], list) and len(shm_map["images"]) == 2
    mask = shm_map["mask"]
    assert (mask.shape, mask.dtype, mask.mode, mask.nbytes) == ((5,), np.dtype("float32"), "w", 20)
    assert repr(mask) == f"ShmObject(name={mask.name}, shape=(5,), dtype=float32)"
    data = inputs()
    expected = {k: [a.tolist() for a in v] if isinstance(v, list) else v if isinstance(v, str) else v.tolist()
                for k, v in data.items()}
    sent = SharedMemoryTransportManager.copy(shm_map, data)
    assert sent["mask"] is mask and sent["prompt"] == "a cat"
    perkey = {k: pickle.dumps(v) for k, v in sent.items()}          # what NOS's client sends
    out = run_python(DECODE_CHILD, {"perkey": {k: v.hex() for k, v in perkey.items()}, "url": service.url,
                                    "via_service": via_service}, python_env)
    assert json.loads(out.stdout) == expected
    for name in names(shm_map):
        assert client.info(name)["present"], f"{name} is still on /dev/shm after the decoder exited"
    again = SharedMemoryDataDict.decode(perkey, client=client)
    assert np.array_equal(again["mask"], expected["mask"])


def test_a_decoder_with_plain_shared_memory_loses_the_segment_so_the_test_above_can_fail(client, manager, python_env):
    """The control: NOS's own reader (plain SharedMemory, never unregistered) unlinks the segment at exit."""
    shm_map = manager.create({"x": TensorSpec((8,), "uint8")}, namespace="nos-control/obj")
    perkey = {"x": pickle.dumps(shm_map["x"])}
    run_python(STANDIN + "\nimport json, pickle, sys\nreq = json.load(sys.stdin)\n"
               "obj = pickle.loads(bytes.fromhex(req['x']))\nprint(json.dumps(obj.get().tolist()))",
               {"x": perkey["x"].hex()}, python_env)
    # The tracker is a process of its own that unlinks once its parent has gone: give it a moment.
    wait_until(lambda: not (SHM / shm_map["x"].name).exists(), timeout=10,
               what="the resource tracker of NOS's reader to unlink the segment")


def test_cleanup_frees_on_slash_boundaries_never_a_sibling_prefix(client, manager):
    for ns in ("a/1", "a/2/x", "ab/1"):
        manager.create({"t": TensorSpec((4,), "uint8")}, namespace=ns)
    other = SharedMemoryTransportManager(client)
    other.create({"t": TensorSpec((4,), "uint8")}, namespace="a/3")   # under "a", but not this manager's
    manager.cleanup("a")
    assert [s["namespace"] for s in client.list("ab")] == ["ab/1"], "NOS's startswith would have freed ab/1"
    assert [s["namespace"] for s in client.list("a")] == ["a/3"], "only what this manager holds"
    other.cleanup()
    assert client.list("a") == []
    assert list(manager._objects_map) == ["ab/1/t"]
    manager.cleanup()
    assert client.list("ab") == [] and manager._objects_map == {}


def test_a_key_already_created_in_the_namespace_is_refused(client, manager):
    manager.create({"t": TensorSpec((4,), "uint8")}, namespace="dup/obj")
    with pytest.raises(tensorshm.Conflict, match="dup/obj/t already exists"):
        manager.create({"t": TensorSpec((4,), "uint8")}, namespace="dup/obj")
    other = SharedMemoryTransportManager(client)
    with pytest.raises(tensorshm.Conflict) as e:
        other.create({"t": TensorSpec((4,), "uint8")}, namespace="dup/obj")
    assert e.value.code == "TSHM_DUPLICATE_KEY" and e.value.status == 409
    assert len(client.list("dup")) == 1


def test_create_is_all_or_nothing_and_needs_at_least_one_spec(client, manager):
    with pytest.raises(tensorshm.BadRequest, match="tensors.huge.shape"):
        manager.create({"ok": TensorSpec((4,), "uint8"), "huge": TensorSpec((2 ** 46,), "uint8")}, namespace="aon/x")
    assert client.list("aon") == [] and manager._objects_map == {}
    holder = SharedMemoryTransportManager(client)  # kept: a collected manager releases what it holds
    holder.create({"taken": TensorSpec((1,), "uint8")}, namespace="aon/z")
    with pytest.raises(tensorshm.Conflict):
        manager.create({"ok": TensorSpec((4,), "uint8"), "taken": TensorSpec((1,), "uint8")}, namespace="aon/z")
    assert [s["key"] for s in client.list("aon")] == ["taken"], "the refused request left nothing behind"
    holder.cleanup()
    assert manager.create({"prompt": "a cat", "n": 3}, namespace="aon/y") == {}
    with pytest.raises(tensorshm.BadRequest, match="namespace"):
        manager.create({"t": TensorSpec((1,), "uint8")}, namespace="bad namespace!")


def test_the_default_namespace_is_the_managers_own(client):
    m = SharedMemoryTransportManager(client)
    shm_map = m.create({"t": TensorSpec((2,), "int16")})
    assert list(m._objects_map) == ["/t"], "NOS's key for the default namespace"
    assert client.info(shm_map["t"].name)["namespace"] == m._default_namespace
    m.cleanup("")
    assert client.list(m._default_namespace) == []


def test_copy_checks_lengths_shapes_and_dtypes_as_nos_does(manager):
    shm_map = manager.create(dict(SPECS), namespace="chk/obj")
    good = inputs()
    cases = [
        ({}, TransportMismatch, "should not be empty"),
        ({"mask": good["mask"]}, TransportMismatch, "Key images not found"),
        ({**good, "images": good["images"][:1]}, TransportMismatch, "length=2, provided input with length=1"),
        ({**good, "mask": good["mask"][:4]}, MismatchError, r"shape \(4,\) does not match shared memory shape \(5,\)"),
        ({**good, "mask": good["mask"].astype(np.float64)}, MismatchError, "dtype float64 does not match"),
        ({**good, "mask": "not an array"}, ValueError, "Unsupported type"),
    ]
    for data, exc, message in cases:
        with pytest.raises(exc, match=message) as e:
            SharedMemoryTransportManager.copy(shm_map, data)
        if exc is not ValueError:
            assert isinstance(e.value, AssertionError), "code catching NOS's AssertionError keeps working"
    with pytest.raises(TransportMismatch):
        SharedMemoryTransportManager.copy({}, good)
    before = shm_map["images"][0].get()
    with pytest.raises(MismatchError):
        shm_map["images"][0].copy_from(np.ones((2, 4, 4), np.uint8))
    assert np.array_equal(shm_map["images"][0].get(), before)


def test_the_manager_releases_what_it_holds_when_collected_and_at_exit(client, service, python_env):
    m = SharedMemoryTransportManager(client)
    m.create({"t": TensorSpec((4,), "uint8")}, namespace="gc-test/obj")
    assert len(client.list("gc-test")) == 1
    del m
    gc.collect()
    assert client.list("gc-test") == []
    run_python("import json, sys\nimport tensorshm\nfrom tensorshm.nos import *\nreq = json.load(sys.stdin)\n"
               "m = SharedMemoryTransportManager(tensorshm.Client(req['url']))\n"
               "m.create({'t': TensorSpec((4,), 'uint8')}, namespace='exit-test/obj')\n"
               "assert len(m._client.list('exit-test')) == 1\n", {"url": service.url}, python_env)
    assert client.list("exit-test") == [], "interpreter exit released what the manager still held"


def test_the_registration_map_pickle_loads_into_objects_that_attach_and_read_what_the_producer_wrote(client, python_env):
    ns = client.new_namespace()
    res = client._http.request("POST", "/v1/segments", accept="application/x-python-pickle", expect=(201,),
                               body={"namespace": ns, "tensors": {"img": {"shape": [3, 4], "dtype": "uint16"},
                                                                   "many": [{"shape": [2], "dtype": "bool"}]}})
    # An unmodified NOS client: its own class, plain pickle.loads, copy_from with tuple shapes.
    code = STANDIN + """
import json, sys, pickle
import numpy as np
shm_map = pickle.loads(bytes.fromhex(json.load(sys.stdin)))
shm_map["img"].copy_from(np.arange(12, dtype=np.uint16).reshape(3, 4))
shm_map["many"][0].copy_from(np.array([True, False]))
print(json.dumps([shm_map["img"].name, type(shm_map["many"]).__name__, repr(shm_map["img"].shape)]))
for o in (shm_map["img"], *shm_map["many"]):
    o.close()
"""
    name, kind, shape = json.loads(run_python(code, res.body.hex(), python_env).stdout)
    assert (kind, shape) == ("list", "(3, 4)")
    got = client.get({"img": client.info(name), "prompt": "x"})
    assert np.array_equal(got["img"], np.arange(12, dtype=np.uint16).reshape(3, 4))
    # and here, where NOS is not installed, plain loads gives tensorshm's objects, attached
    shm_map = pickle.loads(res.body)
    assert isinstance(shm_map["img"], SharedMemoryNumpyObject) and shm_map["img"].mode == "r"
    assert shm_map["many"][0].get().tolist() == [True, False]
    client.release(ns)


def test_tensor_spec_accepts_what_nos_does_that_a_segment_holds(torch):
    assert TensorSpec((480, 640, 3), "uint8").nbytes == 921600
    assert TensorSpec([2, 3], np.float32) == TensorSpec((2, 3), "<f4") == TensorSpec(shape=(2, 3), dtype=torch.float32)
    assert TensorSpec((), "float64").nbytes == 8 and TensorSpec((0, 3), "int8").nbytes == 0
    assert TensorSpec((2,), "bool").dtype == "bool"
    for shape, dtype, exc, message in [
        ((None, 224, 224, 3), "uint8", ValueError, r"shape\[0\]: None \(a dynamic dimension\)"),
        ((2, -1), "uint8", ValueError, r"shape\[1\]: -1 is negative"),
        ((2.5,), "uint8", TypeError, r"shape\[0\]: 2.5 is not an integer"),
        ("abc", "uint8", TypeError, "not a sequence"),
        ((1,) * 33, "uint8", ValueError, "33 dims"),
        ((2,), "object", TypeError, "cannot live in a tensorshm segment"),
        ((2,), "float128", TypeError, "float128|longdouble|not a numpy dtype"),
        ((2,), "nonsense", TypeError, "not a numpy dtype"),
        ((2,), None, TypeError, "None is not a dtype"),
        ((2,), torch.bfloat16, TypeError, "bfloat16 has no numpy equivalent"),
    ]:
        with pytest.raises(exc, match=message):
            TensorSpec(shape, dtype)


def test_an_object_made_directly_allocates_and_cleanup_releases_it(client):
    obj = SharedMemoryNumpyObject(24, (2, 3), np.float32, client=client)
    assert obj.mode == "w" and client.info(obj.name)["present"]
    obj.copy_from(np.ones((2, 3), np.float32))
    assert obj.get().sum() == 6
    obj.close()
    with pytest.raises(ValueError, match="closed"):
        obj.get()
    obj.cleanup()
    obj.cleanup()  # idempotent
    with pytest.raises(tensorshm.NotFound):
        client.info(obj.name)
    with pytest.raises(ValueError, match="nbytes"):
        SharedMemoryNumpyObject(5, (2, 3), np.float32, client=client)


def test_decode_reads_both_forms_and_refuses_any_other_global(client, manager):
    shm_map = manager.create({"x": TensorSpec((3,), "int32"), "l": [TensorSpec((1,), "uint8")] * 2}, namespace="f/o")
    data = SharedMemoryTransportManager.copy(shm_map, {"x": np.array([1, 2, 3], np.int32),
                                                       "l": [np.array([7], np.uint8), np.array([8], np.uint8)],
                                                       "meta": {"k": (1, b"z")}})
    for protocol in (2, 3, 4, 5):
        whole = SharedMemoryDataDict.encode(data, protocol=protocol)
        for form in (whole, {k: pickle.dumps(v, protocol=protocol) for k, v in data.items()}):
            for via in (None, client):
                out = SharedMemoryDataDict.decode(form, client=via)
                assert out["x"].tolist() == [1, 2, 3] and [a.tolist() for a in out["l"]] == [[7], [8]]
                assert out["meta"] == {"k": (1, b"z")}
    evil = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R."
    with pytest.raises(pickle.UnpicklingError, match='refused global "posix.system"'):
        SharedMemoryDataDict.decode({"x": evil})
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        SharedMemoryDataDict.decode(evil)
    with pytest.raises(TypeError, match="a dict"):
        SharedMemoryDataDict.decode(pickle.dumps([1, 2]))
    for misplaced in ([shm_map["x"], "text"], {"inner": shm_map["x"]}):
        with pytest.raises(TypeError, match="'bad': a shared-memory reference can be a value or a list"):
            SharedMemoryDataDict.decode(SharedMemoryDataDict.encode({"bad": misplaced}))
