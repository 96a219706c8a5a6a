"""Client.allocate: segments handed to the producer as writable arrays, to fill in place (no staging copy)."""

from __future__ import annotations

import mmap
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _shm, _torch

Spec = Tuple[Tuple[int, ...], np.dtype, bool]
"""shape, dtype, and whether the caller asked for a torch tensor."""


def parse_spec(value: Any, where: str) -> Spec:
    """A tensor spec in any of the forms :meth:`Client.allocate` takes; TypeError/ValueError naming ``where``.

    Forms: a mapping ``{"shape", "dtype"}``, an object with ``shape`` and ``dtype`` attributes (``TensorSpec``,
    NOS's ``TensorSpec``), an ``np.ndarray`` or a CPU ``torch.Tensor`` used as a template (shape and dtype only; its
    data is not copied). A torch dtype or tensor makes the view a ``torch.Tensor``.
    """
    if _torch.is_tensor(value):
        if value.device.type != "cpu":
            raise TypeError(f"{where}: a {value.device.type} tensor; segments are host memory: use a CPU tensor or "
                            "a torch dtype as the template")
        shape, dtype = tuple(value.shape), value.dtype
    elif isinstance(value, Mapping):
        if "shape" not in value or "dtype" not in value:
            raise TypeError(f"{where}: a spec mapping needs 'shape' and 'dtype', not {sorted(map(str, value))}")
        shape, dtype = value["shape"], value["dtype"]
    elif hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (str, bytes)):
        shape, dtype = value.shape, value.dtype
    else:
        raise TypeError(f"{where}: {type(value).__name__} is not a tensor spec (a TensorSpec, a {{shape, dtype}} "
                        "mapping, an ndarray or a CPU torch tensor as a template)")
    as_torch = _torch.is_dtype(dtype)
    return check_shape(shape, f"{where}.shape"), to_numpy_dtype(dtype, f"{where}.dtype"), as_torch


def check_shape(shape: Any, where: str) -> Tuple[int, ...]:
    """A tuple of non-negative ints; TypeError for what is not a sequence of integers, ValueError for negatives."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{where}: {shape!r} is not a sequence of integers")
    dims = []
    for i, d in enumerate(shape):
        if d is None:
            raise ValueError(f"{where}[{i}]: None (a dynamic dimension) cannot be allocated; give its size")
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{where}[{i}]: {d!r} is not an integer")
        if d < 0:
            raise ValueError(f"{where}[{i}]: {d} is negative")
        dims.append(int(d))
    return tuple(dims)


def to_numpy_dtype(dtype: Any, where: str) -> np.dtype:
    """numpy's dtype for a name, a numpy dtype or type, or a torch dtype; TypeError when no segment can hold it."""
    if _torch.is_dtype(dtype):
        return _torch.numpy_dtype(dtype, where)
    if dtype is None:  # np.dtype(None) would quietly be float64
        raise TypeError(f"{where}: None is not a dtype")
    try:
        parsed = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: {dtype!r} is not a numpy dtype") from None
    return _shm.check_dtype(parsed, where)


def wire_spec(spec: Spec) -> Dict[str, Any]:
    return {"shape": list(spec[0]), "dtype": spec[1].str}


class Allocation:
    """Writable views of freshly allocated segments, and the descriptors to hand to a consumer.

    ``with client.allocate({"img": spec}) as a:`` -- fill ``a["img"]`` in place, send ``a.descriptors`` (a plain
    dict, JSON- and pickle-safe) to any process on the host. Leaving the block unmaps (views still alive keep their
    mapping until they go, as with :class:`Attachment`); it never releases: the segments live until
    ``client.release(a.namespace)`` or their lease ends, so a consumer can still read them.

    Attributes:
        arrays: key -> ``np.ndarray`` (or ``torch.Tensor`` where a torch dtype or tensor was given), or a list of them.
        descriptors: a :class:`PutResult` of the same keys: descriptor or list of descriptors.
        namespace, expires_at: where the segments live and when their lease ends.
    """

    def __init__(self, descriptors: Any, plan: Dict[str, Union[Spec, List[Spec]]]) -> None:
        self.descriptors = descriptors
        self.namespace: str = descriptors.namespace
        self.expires_at: Optional[str] = descriptors.expires_at
        self._maps: List[mmap.mmap] = []
        self.arrays: Dict[str, Any] = {}
        try:
            for key, spec in plan.items():
                got = descriptors[key]
                if isinstance(spec, list):
                    self.arrays[key] = [self._view(d, s, f"{key}[{i}]") for i, (d, s) in enumerate(zip(got, spec))]
                else:
                    self.arrays[key] = self._view(got, spec, key)
        except BaseException:
            self.close()
            raise

    def _view(self, descriptor: Any, spec: Spec, where: str) -> Any:
        name, shape, dtype, nbytes = _shm.parse_descriptor(descriptor, where)
        buf = _shm.map_segment(name, nbytes)
        self._maps.append(buf)
        array = _shm.ndarray_over(buf, shape, dtype)
        return _torch.from_array(array) if spec[2] else array

    def __getitem__(self, key: str) -> Any:
        return self.arrays[key]

    def __enter__(self) -> "Allocation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self.arrays and not self._maps

    def close(self) -> bool:
        """Drops the views and unmaps what no other view uses; returns whether everything was unmapped at once."""
        self.arrays = {}
        maps, self._maps = self._maps, []
        return all([_shm.unmap(m) for m in maps])

    def __repr__(self) -> str:
        return f"<tensorshm.Allocation {self.namespace} keys={list(self.descriptors)}{' closed' if self.closed else ''}>"
