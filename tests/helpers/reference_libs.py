"""The reference libraries the attribution tests compare against, and the shipped weights in torch.

pytorch-grad-cam imports torchvision at module level (for transforms and box IoU that GradCAM never
calls). The only torchvision wheels on the package index need a CUDA torch, which the CPU pin excludes,
so when torchvision is absent the tests give it an empty stand-in: pytorch-grad-cam's GradCAM code then
runs unchanged. grad-cam itself is installed with --no-deps (README test command).
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest


def pytorch_grad_cam():
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops"):
            mod = types.ModuleType(name)
            mod.__dict__.update(Compose=None, Normalize=None, ToTensor=None, resize=None, box_iou=None)
            sys.modules[name] = mod
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
    try:
        import pytorch_grad_cam as pgc
    except ImportError:
        pytest.fail("pytorch-grad-cam is missing: pip install --no-deps grad-cam==1.5.7 (README test command)")
    return pgc


# Our CAM methods (edge.explain.cam.METHODS) by their pytorch-grad-cam class names
PYTORCH_GRAD_CAM_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
                            "gradcam-elementwise": "GradCAMElementWise"}


def pytorch_grad_cam_class(method: str):
    """pytorch-grad-cam's class for one of our CAM methods (the same member of the family: benchmarks
    compare like with like)."""
    return getattr(pytorch_grad_cam(), PYTORCH_GRAD_CAM_CLASSES[method])


def shipped_torch_model(model_dir: Path):
    """The shipped model rebuilt in torch from its weights.pt (eval mode, batch-norm not folded)."""
    import torch

    from edge.train.models import WEIGHTS, build_model

    ckpt = torch.load(Path(model_dir) / WEIGHTS, map_location="cpu", weights_only=True)
    model = build_model(ckpt["meta"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
