"""The three architectures (a fourth, the pretrained backbone for photographs, is in `pretrained.py` and
keeps the same rules). Built for explanation and the edge:

* only convolutions (some strided or dilated), ReLU, batch-norm (folded away at export), global average
  pooling, linear layers and 2x2 transposed-convolution upsampling — ops whose backward passes export
  to plain ONNX (Conv / ConvTranspose / Gemm / Where) that TensorRT's parser accepts;
* no max-pooling: its backward has no ONNX translation, strided convolutions avoid the question;
* the classifier's last convolution keeps 1/8 of the input resolution (16x16 at 128 px), so Grad-CAM
  maps have useful detail, and its head has a hidden layer, so Grad-CAM is not plain CAM.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.errors import InvalidInput
from edge.export.model_dir import WEIGHTS


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
        )


POOLS = ("mean", "meanmax", "attention")


class PooledClassifier(nn.Module):
    """What both defect classifiers share past `features` (which ends at the Grad-CAM target layer): global
    pooling of that layer (`pool_features`), a head with a hidden layer (so Grad-CAM is not plain CAM), and
    the optional mask head. Subclasses build `features` first, then call `_add_head`, so the seeded
    initialisation runs in the same order as before the two shared this."""

    def __init__(self, pool: str):
        super().__init__()
        if pool not in POOLS:
            raise InvalidInput(f"pool {pool!r}; expected one of {', '.join(POOLS)}")
        self.pool = pool

    def _add_head(self, width: int, hidden: int, num_classes: int, mask_head: bool) -> None:
        pooled = width if self.pool == "mean" else 2 * width
        self.head = nn.Sequential(nn.Linear(pooled, hidden), nn.ReLU(inplace=False), nn.Linear(hidden, num_classes))
        # attention pooling reads the mask head, so it always has one
        self.mask_head = nn.Conv2d(width, 1, 1) if (mask_head or self.pool == "attention") else None

    @property
    def target_layer(self) -> str:
        return f"features.{len(self.features) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def classify(self, activations: torch.Tensor) -> torch.Tensor:
        """Logits from the target layer's activations (the part Grad-CAM differentiates)."""
        return self.head(pool_features(activations, self.pool, self.mask_head))

    def segment(self, activations: torch.Tensor) -> torch.Tensor:
        """Defect-mask logits (N, 1, h, w) at the target layer's resolution (training only)."""
        return self.mask_head(activations)


class FusionClassifier(PooledClassifier):
    """Multi-channel defect classifier.

    Each input channel first gets its own filters (grouped stem: thermal, phase and intensity look for
    different things), then the channels are fused. `features` ends at the Grad-CAM target layer.

    pool="meanmax" concatenates global max to global mean pooling: a defect covering 0.1 % of the frame
    moves a spatial mean by almost nothing, while the max lets one small region decide. pool="attention"
    concatenates instead the features averaged under the mask head's sigmoid (in the exported graphs). depth adds
    convolutions per stage (more capacity for real textures); context adds dilated convolutions before the
    target layer (a wider view for broad defects; the target layer itself stays undilated). mask_head adds
    a 1x1 convolution on the target layer that predicts the defect mask at its resolution: trained against
    masks or boxes where the data has them, it makes the target layer's evidence sit on the defect (what
    Grad-CAM draws). It is not part of forward(), so the exported graphs do not carry it.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, pool: str = "mean", depth: int = 0,
                 mask_head: bool = False, context: int = 0):
        super().__init__(pool)
        stem = 8 * in_channels
        w = width
        layers = [ConvBNReLU(in_channels, stem, stride=2, groups=in_channels),  # 1/2, per channel
                  ConvBNReLU(stem, w),                                          # 1/2, fusion
                  ConvBNReLU(w, 2 * w, stride=2),                               # 1/4
                  ConvBNReLU(2 * w, 2 * w)]
        layers += [ConvBNReLU(2 * w, 2 * w) for _ in range(depth)]
        layers += [ConvBNReLU(2 * w, 3 * w, stride=2)]                          # 1/8
        layers += [ConvBNReLU(3 * w, 3 * w) for _ in range(depth)]
        # Context: dilated convolutions (dilation 2, 4, ...) at 1/8, before the target layer. Each widens
        # what a target-layer cell sees by 8 * dilation px a side at the input: the plain network's cells
        # see 43 px, with context=2 139 px. A broad defect (a patch of the part brighter than the rest)
        # shows as a difference from the surface around it, which a cell must see to tell it from the
        # part's own shading (docs/real/README.md, *Context for broad defects*).
        layers += [ConvBNReLU(3 * w, 3 * w, dilation=2 ** (i + 1)) for i in range(context)]
        # Target layer, 1/8. Not dilated: a dilated last layer paints Grad-CAM maps as a lattice
        # of blobs around the defect (seen on the first trained model), not on it.
        layers += [ConvBNReLU(3 * w, 3 * w)]
        self.features = nn.Sequential(*layers)
        self._add_head(3 * w, 2 * w, num_classes, mask_head)


def pool_features(activations: torch.Tensor, pool: str, mask_head: nn.Module | None) -> torch.Tensor:
    """The classifiers' global pooling of the Grad-CAM layer (see FusionClassifier's `pool`)."""
    pooled = activations.mean(dim=(2, 3))
    if pool == "meanmax":
        pooled = torch.cat([pooled, activations.amax(dim=(2, 3))], dim=1)
    elif pool == "attention":
        # Features averaged where the mask head sees a defect (multiple-instance attention): a defect
        # of a few cells decides as much as one filling the frame, and the class score's gradient
        # sits on the defect, so the Grad-CAM family draws it there.
        weight = torch.sigmoid(mask_head(activations))
        attended = (activations * weight).sum(dim=(2, 3)) / (weight.sum(dim=(2, 3)) + 1e-3)
        pooled = torch.cat([pooled, attended], dim=1)
    return pooled


class Up(nn.Module):
    """x2 upsampling by a 2x2 stride-2 transposed convolution (its backward is a plain strided Conv; no
    reshapes of the batch dimension, which keep symbolic tracing slow), merged with a skip by addition."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.expand = nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
        self.refine = ConvBNReLU(c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.refine(self.expand(x) + skip)


def channel_picker(in_channels: int, channel: int) -> torch.Tensor:
    """The weight of a fixed 1x1 convolution that picks one input channel. Not a slice: a slice's backward
    exports as ScatterND, which the TensorRT allow-list does not take; a Conv's is a ConvTranspose."""
    pick = torch.zeros(1, in_channels, 1, 1)
    pick[0, channel] = 1.0
    return pick


class ResidualUNet(nn.Module):
    """Dense regression in physical units: output = input[residual_channel] + scale * correction.

    The input is normalised inside the network (fixed buffers), so the exported graph takes and returns
    physical units (K, rad) and its gradients are per physical unit. Dilated convolutions at 1/8
    resolution give a receptive field of about ±60 px, which phase unwrapping needs to count fringes.
    """

    def __init__(self, in_channels: int, residual_channel: int, output_scale: float,
                 mean: list[float], std: list[float], width: int = 16):
        super().__init__()
        w = width
        self.output_scale = output_scale
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("select", channel_picker(in_channels, residual_channel))
        self.e1 = ConvBNReLU(in_channels, w)
        self.e2 = ConvBNReLU(w, 2 * w, stride=2)
        self.e3 = ConvBNReLU(2 * w, 3 * w, stride=2)
        self.e4 = ConvBNReLU(3 * w, 4 * w, stride=2)
        self.b1 = ConvBNReLU(4 * w, 4 * w, dilation=2)
        self.b2 = ConvBNReLU(4 * w, 4 * w, dilation=4)
        self.u3 = Up(4 * w, 3 * w)
        self.u2 = Up(3 * w, 2 * w)
        self.u1 = Up(2 * w, w)
        self.out = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) * self.inv_std
        s1 = self.e1(z)
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        b = self.b2(self.b1(self.e4(s3)))
        y = self.u1(self.u2(self.u3(b, s3), s2), s1)
        residual = F.conv2d(x, self.select)
        return residual + self.output_scale * self.out(y)


class RadiometricUNet(ResidualUNet):
    """Thermal correction as the camera's own radiometric inversion, with the network estimating only where
    and by how much the surface's effective emissivity differs from the one the camera is calibrated for.

    The camera inverts the radiance eps T^4 + (1 - eps) Te^4 with the calibrated eps_n, so it reports
    T_app with T_app^4 - Te^4 = (eps / eps_n)(T^4 - Te^4) (`edge.sim.thermal.apparent_temperature`); the
    true temperature is then T = ((T_app^4 - Te^4) / ratio + Te^4)^(1/4) with ratio = eps / eps_n. The
    network (the same U-Net) reads the part's shape (with `surface`, the slopes and curvatures computed
    from the height and pitch planes; else those planes), and outputs the ratio
    map (0.4-1.6, 1 where its output is 0: tilted surfaces emit less, cavities more); the reading itself
    (`blind` channels) never enters it. So the correction at a pixel is a function of that pixel's
    reading and of the shape around it, as in the physics: Integrated Gradients from the part at the
    temperature of its surroundings (where ratio does not matter: T_app = T = Te) hands each pixel exactly
    the correction made there, and the physics check reads what the model corrected, not how a network
    spreads a correction over its receptive field. A generic residual U-Net reading the temperature too
    learnt to correct from its neighbourhood (a +2 K patch on a tilted surface moved its own output by
    1.25 K where the physics says about 2.4 K) and was judged at r 0.25-0.54 that way (2026-11-29).
    The 4th root is 4 Newton steps from T_app (Mul/Div/Add only: the TensorRT allow-list has no Pow or
    Sqrt); from T_app, within 10 % of the root for any ratio here, they agree with the exact root to
    float32 rounding (tests). What the shape cannot show, an emissivity change without a change of shape
    (a stain), it does not correct.
    Measured (2026-11-29; the default recipe, 56 epochs on the 6000 training frames; `edge-xai train --head
    radiometric`): IG from ambient against the physics map, r at the physics scale (100 held-out frames per
    geometry, docs/audits/thermal/physics_ceiling.py) cavity 0.93, V-groove 0.95, step 0.92, cylinder 0.78,
    combined 0.86, flat 0.31, where the residual head reads 0.28-0.69; but its error is twice the residual
    head's (MAE 0.235 against 0.115 K; cylinders 0.69 against 0.27): the shape alone pins the emissivity of
    steep surfaces less well than the reading's own pattern does. Re-trained on the simulator with its
    frame edges fixed (2026-11-30; same recipe): cylinder 0.92, combined 0.91, the others 0.91-0.95, flat
    0.33, and MAE 0.165 against the residual head's 0.126 K (1.3x; much of the earlier error came with the
    old frames' edge bands). With `surface` (SurfaceFeatures: the net reads the slopes and curvatures
    instead of the raw height and pitch; 2026-12-01, same recipe): MAE 0.089 and 0.087 K on 600 frames each
    of seeds 2000 and 7000, against the residual head's 0.127 and 0.126 (cylinders 0.15 against 0.28), and
    r 0.92-0.97 from ambient on every shaped geometry (0.98-1.00 pixel by pixel): the shipped thermal
    model since (train's `--head auto` chooses it where the data allows; README, *The shipped thermal
    model reads the surface*)."""

    def __init__(self, in_channels: int, residual_channel: int, output_scale: float, mean: list[float],
                 std: list[float], width: int = 16, env_k: float = 293.15, blind: list[int] | None = None,
                 surface: dict | None = None):
        super().__init__(in_channels, residual_channel, output_scale, mean, std, width)
        self.env_k = float(env_k)
        keep = torch.ones(1, in_channels, 1, 1)
        for c in ([residual_channel] if blind is None else blind):
            keep[0, c] = 0.0
        self.register_buffer("keep", keep)
        # surface: the net reads the surface's slopes and curvatures (SurfaceFeatures) instead of the raw
        # height and pitch planes: {"height": channel, "pitch": channel, "mean": [...],
        # "std": [...]} (the features' statistics on the training frames)
        self.surface = SurfaceFeatures(in_channels, **surface) if surface else None
        if self.surface is not None:
            self.e1 = ConvBNReLU(SurfaceFeatures.COUNT, width)

    def emissivity_ratio(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) effective emissivity over the calibrated one, from the channels the net reads."""
        z = self.surface(x) if self.surface is not None else (x - self.mean) * self.inv_std * self.keep
        s1 = self.e1(z)
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        b = self.b2(self.b1(self.e4(s3)))
        y = self.u1(self.u2(self.u3(b, s3), s2), s1)
        return 0.4 + 1.2 * torch.sigmoid(self.out(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ratio = self.emissivity_ratio(x)
        t = F.conv2d(x, self.select)
        t2 = t * t
        radiance = (t2 * t2 - self.env_k ** 4) / ratio + self.env_k ** 4   # what T^4 must be
        root = t
        for _ in range(NEWTON_STEPS):
            root = 0.75 * root + radiance / (4.0 * root * root * root)
        return root


NEWTON_STEPS = 4


class SurfaceFeatures(nn.Module):
    """The surface's local geometry from its height map, in the quantities emissivity depends on: the slopes
    dh/dx, dh/dy (dimensionless), the squared slope |grad h|^2 (the viewing angle: cos^2 = 1 / (1 + |grad
    h|^2)), and the second derivatives d2h/dx2, d2h/dy2 and their sum, the Laplacian (1/mm: concave
    surfaces see themselves), with the pixel pitch; normalised by their statistics on the training frames.

    Why not let the U-Net find them from the height plane: a slope is a height difference *divided by the
    pitch*, and the ratio map must be right to a few tenths of a percent (an error of 1 % in the emissivity
    ratio moves the corrected temperature of a part at 355 K by about 0.5 K). A network of ReLUs divides
    poorly; computed here, the net only has to learn how emissivity follows angle and curvature. Derivatives
    are central differences, one-sided at the frame's borders (numpy.gradient), as convolutions weighed by
    where each applies: the exported graphs and their traced backward stay on the TensorRT allow-list (a
    slice's or a pad's backward would not)."""

    COUNT = 7
    PLANES = ("height", "pixel_pitch_mm")     # the input planes it reads the surface from

    def __init__(self, in_channels: int, height: int, pitch: int, mean: list[float] | None = None,
                 std: list[float] | None = None):
        super().__init__()
        self.in_channels, self.height, self.pitch = int(in_channels), int(height), int(pitch)
        mean = mean if mean is not None else [0.0] * self.COUNT
        std = std if std is not None else [1.0] * self.COUNT
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pick_height", channel_picker(self.in_channels, self.height))
        self.register_buffer("pick_pitch", channel_picker(self.in_channels, self.pitch))
        # Fixed kernels (not saved with the weights). A derivative along x is three 3x3 kernels: central
        # differences, and the first and last columns' one-sided ones (what the central kernel's zero
        # padding gets wrong there), each weighed by where it applies and summed; the same along y. Few,
        # wide operations: each ONNX node costs ONNX Runtime more than its arithmetic on a 128 px frame.
        taps = ([-0.5, 0.0, 0.5], [0.0, -1.0, 0.5], [-0.5, 1.0, 0.0])        # central, first, last
        diff = torch.zeros(6, 1, 3, 3)
        for i, t in enumerate(taps):
            diff[i, 0, 1, :] = torch.tensor(t)                # d/dx: along the middle row
            diff[3 + i, 0, :, 1] = torch.tensor(t)            # d/dy: down the middle column
        self.register_buffer("diff", diff, persistent=False)
        # where each kernel applies, as 1 - (a neighbour the zero padding lacks): central kernels everywhere
        # (bias 1), "first" where the neighbour before is missing, "last" where the one after is
        edges = torch.zeros(6, 1, 3, 3)
        edges[1, 0, 1, 0] = edges[2, 0, 1, 2] = edges[4, 0, 0, 1] = edges[5, 0, 2, 1] = -1.0
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("edges_bias", torch.ones(6), persistent=False)
        add3 = torch.zeros(2, 6, 1, 1)                      # sums each axis's three weighed differences
        add3[0, :3] = add3[1, 3:] = 1.0
        self.register_buffer("add3", add3, persistent=False)
        self.register_buffer("add2", torch.ones(1, 2, 1, 1), persistent=False)

    def _where(self, f: torch.Tensor) -> torch.Tensor:
        """(N, 6, H, W): where each of `diff`'s kernels applies (1 everywhere for the central ones; the
        first / last column or row for the one-sided ones), from the frame's own shape: a neighbour
        kernel finds the zero padding there. Not ones_like: Mul/Add stay on the allow-list at any size."""
        return F.conv2d(f * 0.0 + 1.0, self.edges, self.edges_bias, padding=1)

    def _derivatives(self, f: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W): d/dx and d/dy of a one-channel f, or d/dx of the first and d/dy of the second
        channel of a two-channel f (numpy.gradient's differences)."""
        d = F.conv2d(f, self.diff, padding=1, groups=f.shape[1])     # 2 groups: x kernels, then y kernels
        return F.conv2d(d * where, self.add3)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 7, H, W) unnormalised: slope x, slope y, squared slope, d2h/dx2, d2h/dy2, Laplacian, pitch."""
        h, p = F.conv2d(x, self.pick_height), F.conv2d(x, self.pick_pitch)
        where = self._where(h)
        slopes = self._derivatives(h / p, where)                  # the pitch is constant over a frame
        curvatures = self._derivatives(slopes / p, where)         # d/dx of slope x, d/dy of slope y
        return torch.cat([slopes, F.conv2d(slopes * slopes, self.add2), curvatures,
                          F.conv2d(curvatures, self.add2), p], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw(x) - self.mean) * self.inv_std


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair of a Sequential (ConvBNReLU, the pretrained backbone's blocks)
    into the convolution (eval semantics), in place."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if (isinstance(module, nn.Sequential) and len(module) >= 2 and isinstance(module[0], nn.Conv2d)
                and isinstance(module[1], nn.BatchNorm2d)):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return model


def build_model(meta: dict) -> nn.Module:
    """A model from the constructor arguments stored in weights.pt."""
    kind = meta["architecture"]
    if kind == "FusionClassifier":
        return FusionClassifier(**meta["kwargs"])
    if kind == "ResidualUNet":
        return ResidualUNet(**meta["kwargs"])
    if kind == "RadiometricUNet":
        return RadiometricUNet(**meta["kwargs"])
    if kind == "LiteClassifier":
        from edge.train.pretrained import LiteClassifier

        return LiteClassifier(**meta["kwargs"])
    raise InvalidInput(f"unknown architecture {kind!r}")


def load_weights(model_dir) -> nn.Module:
    """A model folder's weights.pt as the exported architecture, batch norm folded (what the graphs hold)."""
    from pathlib import Path

    from edge.errors import MissingFile

    path = Path(model_dir) / WEIGHTS
    if not path.is_file():
        raise MissingFile(f"{path}: no weights to export")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["meta"])
    model.load_state_dict(ckpt["state_dict"])
    return fold_batchnorm(model)
