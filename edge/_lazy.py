"""Package surfaces that import on first use: `import edge.serve` must not pull in gRPC, and the CLI's
--help must not load every stage."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, names: dict[str, str], namespace: dict) -> Callable[[str], object]:
    """A module `__getattr__` resolving each public name from its submodule (`names`: name -> submodule)
    on first access, then caching it in the package's namespace."""
    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value
    return __getattr__
