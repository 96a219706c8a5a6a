"""A stand-in for NOS's own ``nos.common.shm`` in a process where NOS is "installed": the class at NOS's path, with
NOS's dataclass fields and pickled state, and NOS's reader behaviour (``__setstate__`` attaches with plain
``SharedMemory``, which registers the segment with the resource tracker; ``close`` unregisters). Child processes
run its source (``STANDIN``) before anything else; it is never imported by the client under test.
"""

STANDIN = r'''
import sys, types
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
import numpy as np

for _name in ("nos", "nos.common", "nos.common.shm"):
    sys.modules[_name] = types.ModuleType(_name)
sys.modules["nos"].common = sys.modules["nos.common"]
sys.modules["nos.common"].shm = sys.modules["nos.common.shm"]


@dataclass
class SharedMemoryNumpyObject:
    nbytes: int
    shape: tuple
    dtype: np.dtype
    mode: str = field(init=False, default="r")

    @property
    def name(self):
        return self._shm.name

    def __getstate__(self):
        return {"name": self.name, "shape": self.shape, "dtype": str(self.dtype)}

    def __setstate__(self, state):
        self._shm = SharedMemory(name=state["name"], create=False)   # registered with the tracker, as NOS does
        self.shape, self.dtype, self.mode = state["shape"], np.dtype(state["dtype"]), "r"
        self._arr = np.ndarray(self.shape, self.dtype, buffer=self._shm.buf)

    def copy_from(self, arr):
        assert arr.shape == self.shape, f"{arr.shape} != {self.shape}"
        assert arr.dtype == self.dtype
        self._arr[:] = arr[:]

    def get(self):
        return self._arr.copy()

    def close(self):
        self._arr = None
        self._shm.close()
        resource_tracker.unregister(self._shm._name, "shared_memory")


SharedMemoryNumpyObject.__module__ = "nos.common.shm"
sys.modules["nos.common.shm"].SharedMemoryNumpyObject = SharedMemoryNumpyObject


def nos_object(name, shape, dtype):
    """A NOS object naming an existing segment, without attaching (enough to pickle it)."""
    obj = SharedMemoryNumpyObject.__new__(SharedMemoryNumpyObject)
    obj.nbytes, obj.shape, obj.dtype, obj.mode = int(np.prod(shape)) * np.dtype(dtype).itemsize, tuple(shape), np.dtype(dtype), "w"
    obj._shm = types.SimpleNamespace(name=name)
    return obj
'''
