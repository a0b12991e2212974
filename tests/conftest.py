"""Shared fixtures: tiny datasets made at test time (nothing is downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# Two CI cores: keep torch and onnxruntime from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly on machines without an NVIDIA GPU."""
    import shutil
    import subprocess

    has_gpu = False
    if shutil.which("nvidia-smi"):
        has_gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    """60 simulated samples at 32 px (10 per class)."""
    from edge.sim.sample import SimConfig, write_dataset

    out = tmp_path_factory.mktemp("sim") / "data"
    return write_dataset(out, 60, seed=5, cfg=SimConfig(size=32), progress=False)
