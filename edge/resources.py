"""Where the files that ship with edge-xai are: the bundled models and the CUDA kernel sources.

In a source checkout they are the repository's `models/` and `kernels/`; a wheel installs them under
`<prefix>/share/edge-xai/` (pyproject's data-files). A deployment points the node at its own models with
`[serve] models_dir`, `--models`, or the environment variable EDGE_XAI_MODELS.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def bundled(name: str) -> Path:
    """The shipped folder `name` ("models", "kernels"): the checkout's when running from one, else the
    installed copy; the checkout path when neither exists (so errors name where it was looked for)."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / name).is_dir():
        return CHECKOUT / name
    installed = Path(sys.prefix) / "share" / "edge-xai" / name
    return installed if installed.is_dir() else CHECKOUT / name


def models_dir() -> Path:
    """The default models folder: $EDGE_XAI_MODELS, else the bundled models."""
    env = os.environ.get("EDGE_XAI_MODELS")
    return Path(env) if env else bundled("models")


def data_dir() -> Path:
    """Where a node keeps its inspection store by default: $XDG_DATA_HOME/edge-xai (~/.local/share/edge-xai),
    not the working directory a service happens to start in."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "edge-xai"
