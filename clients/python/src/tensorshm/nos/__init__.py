"""NOS's ``nos.common.shm`` API on top of the tensorshm service: switch a NOS program by changing one import.

    from nos.common.shm import SharedMemoryTransportManager, SharedMemoryDataDict   # before
    from tensorshm.nos import SharedMemoryTransportManager, SharedMemoryDataDict, TensorSpec   # after

The names, signatures and behaviour are NOS's (``create``, ``copy``, ``cleanup``, ``SharedMemoryNumpyObject``'s
attributes and pickled form, ``SharedMemoryDataDict.encode``/``decode``, ``TensorSpec``), with the service owning
the segments: it creates them (no 0666, no chown to uid 1000), leases them, journals them, and the allocation-rate
warning is its metric. Objects pickle under NOS's class path with NOS's exact state, so an unmodified NOS server
unpickles them with its own class; here they unpickle (even where NOS is not installed) attaching without
Python's resource tracker, so a process that decodes and exits never unlinks the service's segment.
"""

from ._datadict import RestrictedUnpickler, SharedMemoryDataDict, restricted_loads
from ._manager import SharedMemoryTransportManager, TransportMismatch
from ._object import MismatchError, SharedMemoryNumpyObject
from ._spec import TensorSpec

__all__ = [
    "SharedMemoryNumpyObject",
    "SharedMemoryDataDict",
    "SharedMemoryTransportManager",
    "TensorSpec",
    "MismatchError",
    "TransportMismatch",
    "RestrictedUnpickler",
    "restricted_loads",
]
