"""CPU torch tensors in and out of segments, without importing torch unless the caller already has.

torch stays optional: nothing here imports it. A value is a tensor only if ``torch`` is already in ``sys.modules``
(whoever made a tensor imported it), so a process without torch never pays for it, and one with it gets views
that share memory with the segment (``torch.from_numpy``, no copy).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

from . import _shm


def _torch() -> Any:
    return sys.modules.get("torch")


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (False whenever torch was never imported)."""
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def is_dtype(value: Any) -> bool:
    """Whether ``value`` is a ``torch.dtype`` such as ``torch.float32``."""
    torch = _torch()
    return torch is not None and isinstance(value, torch.dtype)


def numpy_dtype(dtype: Any, where: str) -> np.dtype:
    """The numpy dtype of a torch dtype; TypeError for those numpy has no equal of (bfloat16, quantized, ...)."""
    torch = _torch()
    try:
        probe = torch.empty(0, dtype=dtype).numpy()
    except (TypeError, RuntimeError):
        raise TypeError(f"{where}: torch dtype {dtype} has no numpy equivalent, so no segment can hold it "
                        f"(supported: {_shm.SUPPORTED})") from None
    return _shm.check_dtype(probe.dtype, where)


def as_array(tensor: Any, where: str) -> np.ndarray:
    """A numpy view of a CPU tensor's memory, for copying into a segment; TypeError for what cannot be copied as is.

    A CUDA (or other device) tensor would need a device-to-host copy the caller should see and choose, and a
    non-contiguous one a hidden gather: both are refused with the call that makes them acceptable.
    """
    if tensor.device.type != "cpu":
        raise TypeError(f"{where}: a {tensor.device.type} tensor; tensorshm holds host memory: pass tensor.cpu()")
    if not tensor.is_contiguous():
        raise TypeError(f"{where}: a non-contiguous tensor (strides {tuple(tensor.stride())}); pass "
                        "tensor.contiguous()")
    if tensor.is_sparse or tensor.layout is not _torch().strided:
        raise TypeError(f"{where}: a {tensor.layout} tensor; only dense (strided) tensors fit in a segment")
    numpy_dtype(tensor.dtype, where)
    # detach: autograd history means nothing in another process; resolve_conj/neg: lazy bits numpy cannot see.
    return tensor.detach().resolve_conj().resolve_neg().numpy()


def from_array(array: np.ndarray) -> Any:
    """``torch.from_numpy`` over ``array``: the tensor shares its memory and keeps it (and its mapping) alive.

    Raises ValueError for a read-only array: torch tensors have no read-only flag, and a write through one over a
    read-only mapping would kill the process with SIGSEGV.
    """
    torch = _torch()
    if torch is None:  # pragma: no cover - callers only ask for tensors once torch is there
        import torch  # noqa: F811 - the caller asked for a tensor, so torch must be installed
    if not array.flags.writeable:
        raise ValueError("a read-only mapping cannot become a torch tensor (torch cannot refuse writes, and a write "
                         "would crash the process): attach without readonly=True, or use the numpy array")
    return torch.from_numpy(array)


def want_torch(flag: Optional[bool]) -> bool:
    """``as_torch=True`` needs torch installed: say so plainly instead of failing later."""
    if not flag:
        return False
    if _torch() is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ImportError("as_torch=True needs torch installed (pip install torch); tensorshm itself does not "
                              "depend on it") from None
    return True
