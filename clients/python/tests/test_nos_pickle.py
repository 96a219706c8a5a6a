"""Byte level: what tensorshm.nos.SharedMemoryNumpyObject pickles is what NOS's own class pickles."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest

from tensorshm.nos import SharedMemoryNumpyObject, SharedMemoryTransportManager, TensorSpec

from conftest import run_python
from nos_standin import STANDIN

PROTOCOLS = (2, 3, 4, 5)

# Each child pickles the same three values at every protocol with pickle and cloudpickle (NOS's own dumps):
# one object, a whole dict with a list of objects, and NOS's per-key form. `make(desc)` builds an object.
DUMPS = """
import json, pickle, sys
import cloudpickle
req = json.load(sys.stdin)
objs = {k: make(d) for k, d in req["descs"].items()}
values = {"one": objs["a"], "whole": {"images": [objs["a"], objs["b"]], "prompt": "a cat"},
          "perkey": {"images": pickle.dumps(objs["a"], protocol=5), "prompt": pickle.dumps("a cat", protocol=5)}}
out = {}
for p in (2, 3, 4, 5):
    for label, v in values.items():
        out[f"pickle-{p}-{label}"] = pickle.dumps(v, protocol=p).hex()
        out[f"cloudpickle-{p}-{label}"] = cloudpickle.dumps(v, protocol=p).hex()
print(json.dumps(out))
"""

NOS_MAKE = STANDIN + "\ndef make(d):\n    return nos_object(d['name'], d['shape'], d['dtype'])\n"
OURS_MAKE = ("import tensorshm\nfrom tensorshm.nos import SharedMemoryNumpyObject\nimport json, sys\n"
             "def make(d):\n    return SharedMemoryNumpyObject._writer(d, None)\n")


@pytest.fixture()
def segments(client):
    m = SharedMemoryTransportManager(client)
    shm_map = m.create({"a": TensorSpec((1, 480, 640, 3), "uint8"), "b": TensorSpec((2, 3), ">i2")},
                       namespace=client.new_namespace())
    yield {k: {"name": o.name, "shape": list(o.shape), "dtype": str(o.dtype)} for k, o in shm_map.items()}
    m.cleanup()


def test_pickles_are_byte_identical_to_nos_own_class_where_nos_is_and_is_not_installed(segments, python_env):
    import cloudpickle  # noqa: F401 - NOS's dumps; scripts/install-test-deps.sh installs it, so no quiet skip
    theirs = json.loads(run_python(NOS_MAKE + DUMPS, {"descs": segments}, python_env).stdout)
    without_nos = json.loads(run_python(OURS_MAKE + DUMPS, {"descs": segments}, python_env).stdout)
    # NOS installed in the same process (its class already imported): ours pickle as NOS's class itself.
    beside_nos = json.loads(run_python(STANDIN + OURS_MAKE + DUMPS, {"descs": segments}, python_env).stdout)
    assert len(theirs) == 2 * len(PROTOCOLS) * 3
    for label, data in theirs.items():
        assert without_nos[label] == data, f"{label}: where NOS is not installed"
        assert beside_nos[label] == data, f"{label}: beside NOS's own module"


def test_the_state_is_nos_exactly_a_tuple_shape_and_the_class_path(segments):
    obj = SharedMemoryNumpyObject._writer(segments["b"], None)
    assert obj.__getstate__() == {"name": segments["b"]["name"], "shape": (2, 3), "dtype": ">i2"}
    for protocol in PROTOCOLS:
        data = pickle.dumps(obj, protocol=protocol)
        expected = b"\x8c\x0enos.common.shm\x94\x8c\x17SharedMemoryNumpyObject\x94\x93" if protocol >= 4 \
            else b"cnos.common.shm\nSharedMemoryNumpyObject\n"
        assert expected in data, f"protocol {protocol} names NOS's class"
        assert b"tensorshm" not in data
    obj.close()


def test_unpickling_without_nos_attaches_and_exiting_leaves_the_segment(client, segments, python_env):
    assert getattr(sys.modules["nos"], "__tensorshm_standin__", False), "NOS is not installed in this process"
    data = pickle.dumps({"img": SharedMemoryNumpyObject._writer(segments["a"], None)}, protocol=2)
    code = """
import json, pickle, sys
from multiprocessing import resource_tracker
import tensorshm.nos
d = pickle.loads(bytes.fromhex(json.load(sys.stdin)))
o = d["img"]
o.copy_from(o.get() + 1)
print(json.dumps([type(o).__module__, type(o).__qualname__, o.mode, repr(o.shape), int(o.get().sum())]))
"""
    for _ in range(2):  # twice: the first exit must not have unlinked it
        module, qualname, mode, shape, total = json.loads(run_python(code, data.hex(), python_env).stdout)
        assert (module, qualname, mode, shape) == ("nos.common.shm", "SharedMemoryNumpyObject", "r", "(1, 480, 640, 3)")
    assert total == 2 * 480 * 640 * 3
    assert client.info(segments["a"]["name"])["present"]
    assert np.all(client.get(segments["a"]) == 2)
