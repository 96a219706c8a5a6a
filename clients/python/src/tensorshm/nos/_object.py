"""``SharedMemoryNumpyObject``: NOS's handle of one tensor in shared memory, on the service's segments."""

from __future__ import annotations

import copyreg
import mmap
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import _shm, _torch
from ..client import Client
from ..errors import NotFound
from . import _classpath
from ._spec import TensorSpec


class MismatchError(TypeError, AssertionError):
    """An array's shape or dtype is not the segment's. Also an AssertionError, which is what NOS raises."""


class SharedMemoryNumpyObject:
    """One tensor in one of the service's segments, with NOS's attributes, methods and pickled form.

    Made by :meth:`SharedMemoryTransportManager.create` (``mode == "w"``, the writer), or by unpickling (``"r"``,
    a reader in any process; it attaches without Python's resource tracker, so exiting never unlinks the
    service's segment). Constructing one directly, ``SharedMemoryNumpyObject(nbytes, shape, dtype)``, allocates a
    segment through the service as NOS's constructor creates one (keyword-only ``client``, ``namespace``, ``ttl``).

    Attributes:
        nbytes: the tensor's bytes. shape: a tuple of ints. dtype: an ``np.dtype``. mode: ``"w"`` or ``"r"``.
    """

    nbytes: int
    shape: Tuple[int, ...]
    dtype: np.dtype
    mode: str

    def __init__(self, nbytes: int, shape: Tuple[int, ...], dtype: Any, *, client: Optional[Client] = None,
                 namespace: Optional[str] = None, ttl: Optional[float] = None) -> None:
        spec = TensorSpec(shape, dtype)
        if nbytes != spec.nbytes:
            raise ValueError(f"nbytes: {nbytes!r}, but shape {spec.shape} of {spec.dtype} takes {spec.nbytes}")
        client = client if client is not None else Client()
        created = client._create({"tensor": {"shape": list(spec.shape), "dtype": spec.dtype}}, namespace, ttl)
        self._bind(created["tensor"], "w", client)

    @classmethod
    def _writer(cls, descriptor: Dict[str, Any], client: Client) -> "SharedMemoryNumpyObject":
        obj = cls.__new__(cls)
        obj._bind(descriptor, "w", client)
        return obj

    def _bind(self, descriptor: Any, mode: str, client: Optional[Client]) -> None:
        name, shape, dtype, nbytes = _shm.parse_descriptor(descriptor, "SharedMemoryNumpyObject")
        self._name, self.shape, self.dtype, self.nbytes, self.mode = name, shape, dtype, nbytes, mode
        self._client = client
        self._buf: Optional[mmap.mmap] = None
        try:
            self._buf = _shm.map_segment(name, nbytes)
        except PermissionError:  # a reader with read permission only: NOS maps read-write, but reading still works
            self._buf = _shm.map_segment(name, nbytes, readonly=True)
        self._shm_arr: Optional[np.ndarray] = _shm.ndarray_over(self._buf, shape, dtype)

    @property
    def name(self) -> str:
        """The segment's name (``nos_psm_<16 hex>`` with the service's default prefix)."""
        return self._name

    def __repr__(self) -> str:
        return f"ShmObject(name={self.name}, shape={self.shape}, dtype={self.dtype})"

    # -- pickling: NOS's class path and state, nothing else -----------------------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": tuple(self.shape), "dtype": str(self.dtype)}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"SharedMemoryNumpyObject state: a dict of name, shape and dtype, not {type(state).__name__}")
        self._bind(state, "r", None)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105
        # pickle checks that NEWOBJ's class is the object's __class__: beside NOS's own module, that is NOS's
        # class, so that ours pickle as NOS's would (and isinstance(obj, NOS's class) holds). type() is unchanged.
        return _classpath.imported_class(type(self))

    def __reduce_ex__(self, protocol: int) -> Any:
        cls = _classpath.pickle_class(type(self))
        if protocol >= 2:  # what object.__reduce_ex__ gives NOS's class: cls.__new__(cls), then BUILD
            return copyreg.__newobj__, (cls,), self.__getstate__()
        return copyreg._reconstructor, (cls, object, None), self.__getstate__()  # type: ignore[attr-defined]

    # -- data ------------------------------------------------------------------------------------------------------

    def _array(self) -> np.ndarray:
        if self._shm_arr is None:
            raise ValueError(f"{self!r} is closed")
        return self._shm_arr

    def copy_from(self, arr: Any) -> None:
        """Copies ``arr`` (an ndarray or a CPU torch tensor of exactly this shape and dtype) into the segment.

        Raises:
            MismatchError (a TypeError and an AssertionError): another shape or dtype; nothing is written.
            TypeError: a GPU or non-contiguous tensor.
        """
        if _torch.is_tensor(arr):
            arr = _torch.as_array(arr, "copy_from")
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"copy_from: an ndarray or a torch tensor, not {type(arr).__name__}")
        if arr.shape != self.shape:
            raise MismatchError(f"Array shape {arr.shape} does not match shared memory shape {self.shape}")
        if arr.dtype != self.dtype:
            raise MismatchError(f"Array dtype {arr.dtype} does not match shared memory dtype {self.dtype}")
        np.copyto(self._array(), arr, casting="no")

    def get(self) -> np.ndarray:
        """A copy of the tensor (a view would change under the writer's next copy)."""
        return self._array().copy()

    def close(self) -> None:
        """Unmaps the segment in this process (reader side). Never unlinks; idempotent."""
        self._shm_arr = None
        buf, self._buf = self._buf, None
        _shm.unmap(buf)

    def cleanup(self) -> None:
        """Closes, then releases the segment through the service (writer side). Idempotent."""
        self.close()
        client = self._client if self._client is not None else Client()
        try:
            client.delete(self.name)
        except NotFound:
            pass


_classpath.install_standin(SharedMemoryNumpyObject)
