"""Test helpers, importable from every test as `helpers` (pytest puts tests/ on the path: pyproject's
`pythonpath`): paths, a real running server (`helpers.server`), the reference libraries' loaders
(`helpers.reference_libs`)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def randomise_batchnorm(model):
    """Untrained BN is the identity; give it statistics so folding is really exercised."""
    import torch

    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model
