"""tensorshm: hand numpy arrays between processes on one host through the tensorshm service's shared memory.

>>> import numpy as np, tensorshm
>>> c = tensorshm.Client()                                  # $TENSORSHM_URL or http://127.0.0.1:8000
>>> d = c.put({"image": np.zeros((480, 640, 3), np.uint8), "prompt": "a cat"})
>>> with c.attach(d["image"]) as img: ...                   # zero-copy view, in any process on the host
>>> c.get(d)                                                # a copy, through the service
>>> c.release(d.namespace)
>>> with c.allocate({"image": {"shape": (480, 640, 3), "dtype": "uint8"}}) as a:   # zero-copy producer
...     a["image"][:] = 7; send(a.descriptors)                # fill in place; hand the descriptors on

NOS's ``nos.common.shm`` API, on top of the service: ``from tensorshm.nos import SharedMemoryTransportManager, ...``.
CPU torch tensors are accepted wherever arrays are (torch itself stays optional).

Only numpy and the standard library are needed at run time.
"""

from .client import DEFAULT_URL, Allocation, Attachment, Client, PutResult
from . import errors as _errors
from .errors import *  # noqa: F401,F403 - the exception classes, listed once, in errors.__all__

__version__ = "0.1.0"

__all__ = ["Client", "Attachment", "Allocation", "PutResult", "DEFAULT_URL", *(n for n in _errors.__all__ if n != "error_for_status")]
