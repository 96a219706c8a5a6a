"""Where ``nos.common.shm.SharedMemoryNumpyObject`` resolves, so that our objects pickle under NOS's class path.

pickle writes a class by its ``__module__`` and ``__qualname__`` and then checks, by importing that module, that
the name gives back the very same class. So:

* in a process where NOS is installed (or a stand-in of it is already in ``sys.modules``), our objects pickle
  *as* NOS's class, with NOS's state: a NOS server unpickles them with its own class, byte for byte what NOS's
  client would have sent;
* where NOS is not installed, ``nos``, ``nos.common`` and ``nos.common.shm`` are registered as small stand-in
  modules whose ``SharedMemoryNumpyObject`` is ours, so that this process can both pickle and plain-``loads``
  them (attaching through the service's segments, without the resource tracker).

The stand-ins carry ``__tensorshm_standin__ = True``; they are only ever added where ``import nos`` would fail.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Optional

MODULE = "nos.common.shm"
NAME = "SharedMemoryNumpyObject"


def nos_installed() -> bool:
    """Whether ``import nos`` would find a real package (or something is already registered under that name)."""
    if "nos" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("nos") is not None
    except (ImportError, ValueError):
        return False


def install_standin(cls: type) -> None:
    """Registers ``nos.common.shm`` with ``cls`` in it, unless a real or stand-in NOS is there already."""
    if MODULE in sys.modules or nos_installed():
        return
    modules = {}
    for name in ("nos", "nos.common", MODULE):
        module = types.ModuleType(name, "tensorshm's stand-in: NOS is not installed in this process")
        module.__tensorshm_standin__ = True  # type: ignore[attr-defined]
        modules[name] = module
    modules["nos"].common = modules["nos.common"]  # type: ignore[attr-defined]
    modules["nos.common"].shm = modules[MODULE]  # type: ignore[attr-defined]
    setattr(modules[MODULE], NAME, cls)
    cls.__module__ = MODULE
    cls.__qualname__ = NAME
    sys.modules.update(modules)


def pickle_class(ours: type) -> Any:
    """The class our objects pickle as: what ``nos.common.shm.SharedMemoryNumpyObject`` names in this process."""
    module: Optional[types.ModuleType] = sys.modules.get(MODULE)
    if module is None:
        if nos_installed():  # pickle itself would import it to check the class: do it once, here
            module = importlib.import_module(MODULE)
        else:
            install_standin(ours)
            module = sys.modules[MODULE]
    cls = getattr(module, NAME, None)
    if cls is None:
        raise TypeError(f"{MODULE} is imported but has no {NAME}: cannot pickle under NOS's class path")
    return cls


def imported_class(ours: type) -> type:
    """NOS's class if ``nos.common.shm`` is imported already (never imports it), else ``ours``."""
    module = sys.modules.get(MODULE)
    cls = getattr(module, NAME, None) if module is not None else None
    return cls if isinstance(cls, type) else ours
