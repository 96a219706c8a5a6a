"""NOS's ``TensorSpec``: the shape and dtype a segment is allocated for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

from .._allocation import check_shape, to_numpy_dtype
from .._shm import SUPPORTED

#: numpy's own limit on dimensions, which the service keeps too.
MAX_NDIM = 32


@dataclass(frozen=True, init=False)
class TensorSpec:
    """The shape and dtype of a tensor to allocate, as ``nos.common.types.TensorSpec`` has them.

    ``TensorSpec((480, 640, 3), "uint8")`` or ``TensorSpec(shape=..., dtype=np.float32)``. ``shape`` is kept as a
    tuple of ints, ``dtype`` as numpy's canonical name (``"<f4"`` -> ``"float32"``). Accepted: what NOS's
    TensorSpec accepts that a segment can hold -- dtype names numpy has (and numpy dtypes, types, torch dtypes
    with a numpy equal), shapes of non-negative ints, up to 32 dims (NOS stops at 4; the service does not).

    Raises:
        ValueError: a dim is negative or ``None``: NOS allows ``None`` (a dynamic dim) in model signatures, but
            nothing of unknown size can be allocated. More than 32 dims.
        TypeError: a dim is not an integer, or the dtype is not one a segment holds (supported: bool,
            int8-int64, uint8-uint64, float16/32/64, complex64/128).
    """

    shape: Tuple[int, ...]
    dtype: str

    def __init__(self, shape: Any, dtype: Any) -> None:
        dims = check_shape(shape, "TensorSpec.shape")
        if len(dims) > MAX_NDIM:
            raise ValueError(f"TensorSpec.shape: {len(dims)} dims; at most {MAX_NDIM}")
        canonical = to_numpy_dtype(dtype, "TensorSpec.dtype")
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "dtype", str(canonical))

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes: the product of the dims times the item size."""
        count = 1
        for d in self.shape:
            count *= d
        return count * np.dtype(self.dtype).itemsize

    @classmethod
    def of(cls, value: Any, where: str = "spec") -> "TensorSpec":
        """``value`` as a TensorSpec: this class, NOS's (anything with ``shape`` and ``dtype``), or an error."""
        if isinstance(value, cls):
            return value
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"{where}: {type(value).__name__} is not a TensorSpec")
        try:
            return cls(value.shape, value.dtype)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}") from None


def is_spec(value: Any) -> bool:
    """Whether ``value`` is a TensorSpec, this package's or NOS's (``nos.common.types.TensorSpec`` and kin)."""
    if isinstance(value, TensorSpec):
        return True
    kind = type(value)
    return kind.__name__.endswith("Spec") and kind.__module__.startswith("nos.") and hasattr(value, "shape") \
        and hasattr(value, "dtype")


__all__ = ["TensorSpec", "MAX_NDIM", "SUPPORTED"]
