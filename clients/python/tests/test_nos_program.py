"""Done when: a program written against ``nos.common.shm`` runs unchanged once its import names ``tensorshm.nos``.

The program below is written the way NOS's gRPC client and server use the module (RegisterSystemSharedMemory,
copy, per-key cloudpickle dumps, the server's decode, UnregisterSystemSharedMemory), with NOS's imports. The test
switches those import lines, and nothing else, and runs it in a fresh process against the real service, with the
server's decode in a process of its own that exits without cleanup.
"""

from __future__ import annotations

import json

from conftest import run_python

NOS_PROGRAM = '''
import json, subprocess, sys
import numpy as np
from cloudpickle import dumps, loads
from nos.common.shm import SharedMemoryDataDict, SharedMemoryTransportManager
from nos.common.types import TensorSpec

# -- server: RegisterSystemSharedMemory ------------------------------------------------------------------------
shm_manager = SharedMemoryTransportManager()
def register(request_bytes, client_id, object_id):
    return dumps(shm_manager.create(loads(request_bytes), namespace=f"{client_id}/{object_id}"))

# -- client: register from its inputs, copy, encode ---------------------------------------------------------------
inputs = {"images": np.random.default_rng(3).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8), "prompts": ["a cat"]}
shm_request = {k: TensorSpec(v.shape, dtype=str(v.dtype)) for k, v in inputs.items() if isinstance(v, np.ndarray)}
shm_objects = loads(register(dumps(shm_request), "client-7", "obj-1"))
assert shm_objects["images"].shape == inputs["images"].shape      # NOS's client compares tuples
inputs = SharedMemoryTransportManager.copy(shm_objects, dict(inputs))
wire = {k: dumps(v) for k, v in inputs.items()}

# -- server: decode (here in another process, which exits without any cleanup) ----------------------------------
decoder = """
import json, sys
from cloudpickle import loads
from nos.common.shm import SharedMemoryDataDict, SharedMemoryTransportManager
wire = {k: bytes.fromhex(v) for k, v in json.load(sys.stdin).items()}
out = SharedMemoryDataDict.decode(wire)
print(json.dumps({"sum": int(out["images"].sum()), "shape": list(out["images"].shape), "prompts": out["prompts"]}))
"""
decoded = [json.loads(subprocess.run([sys.executable, "-c", decoder],
                                     input=json.dumps({k: v.hex() for k, v in wire.items()}), text=True,
                                     capture_output=True, check=True).stdout) for _ in range(2)]

# -- client: UnregisterSystemSharedMemory --------------------------------------------------------------------------
for v in shm_objects.values():
    v.close()
shm_manager.cleanup(namespace="client-7/obj-1")
print(json.dumps({"decoded": decoded, "expected": int(np.random.default_rng(3).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8).sum())}))
'''

IMPORTS = {
    "from nos.common.shm import SharedMemoryDataDict, SharedMemoryTransportManager":
        "from tensorshm.nos import SharedMemoryDataDict, SharedMemoryTransportManager",
    "from nos.common.types import TensorSpec": "from tensorshm.nos import TensorSpec",
}


def switch(program: str) -> str:
    """The one change a NOS user makes: the import lines (every one of them, the decoder's too)."""
    for old, new in IMPORTS.items():
        assert old in program
        program = program.replace(old, new)
    assert "nos.common" not in program
    return program


def test_a_nos_program_runs_unchanged_with_its_import_switched(client, service, python_env):
    import cloudpickle  # noqa: F401 - NOS's pickler; scripts/install-test-deps.sh installs it
    program = switch(NOS_PROGRAM)
    env = dict(python_env, TENSORSHM_URL=service.url)
    out = json.loads(run_python(program, None, env).stdout.strip().splitlines()[-1])
    first, second = out["decoded"]
    assert first == second == {"sum": out["expected"], "shape": [2, 48, 64, 3], "prompts": ["a cat"]}, \
        "the second decoder found the segment the first one's exit left in place"
    assert client.list("client-7") == [], "cleanup released the namespace through the service"
