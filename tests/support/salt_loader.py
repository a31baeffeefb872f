"""Load a custom Salt module or state the way Salt's loader would, without a Salt loader.

Salt's loader injects dunders (``__salt__``, ``__opts__``, ``__grains__``) into each module it
loads. ``load_module`` does the same by hand: it imports the file by path and sets the dunders
as module attributes, which is where the module's functions look them up at call time. Used by
the unit tests (fixture ``load``) and by tests/marathon against a real emulator.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# A fresh module object per load, so dunders injected by one test never leak into another.
_serial = itertools.count()


def load_module(
    kind: str,
    name: str,
    *,
    salt: dict[str, Callable[..., Any]] | None = None,
    test: bool = False,
    grains: dict[str, Any] | None = None,
) -> ModuleType:
    assert kind in ("_modules", "_states"), kind
    path = REPO / kind / f"{name}.py"
    spec = importlib.util.spec_from_file_location(
        f"saltyard_loaded_{kind.strip('_')}_{name}_{next(_serial)}", path
    )
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__salt__ = salt if salt is not None else {}
    module.__opts__ = {"test": test}
    module.__grains__ = grains if grains is not None else {}
    return module
