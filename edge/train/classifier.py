"""The defect classifier's training loop: augmentation, class-balanced sampling, an auxiliary mask loss
where masks or boxes exist, an exponential moving average of the weights, and the best validation
checkpoint kept.

    model, log = fit_classifier(data, recipe, augmentation, epochs, gen)

Why these pieces, for a few hundred real photographs on a CPU:
- the moving average of the weights (Polyak averaging) is what a small, noisy data set gains most from
  at no extra gradient cost; it is the model validated, kept and exported;
- the mask loss (1x1 convolution on the Grad-CAM layer, binary cross-entropy against the mask or filled
  boxes at that layer's resolution) teaches the layer Grad-CAM reads to put its evidence on the defect,
  the seed paper's multitask idea; images of the defect-free class count as empty masks;
- label smoothing keeps the logits of a small data set from running away (over-confident answers).

Measured on NEU-DET (test split, 128 px, 54 epochs, flips; torch maps, pointing game within one cell):
mean+max pooling 99.4 % (Grad-CAM pointing 0.69-1.0), with the mask loss 99.6 % (HiResCAM 0.76-1.0),
attention pooling with the mask loss 99.8 % (HiResCAM 0.81-0.99, Grad-CAM 0.20-0.97): the mask-guided
pooling is the default, and training picks the CAM method that localises best on validation. The mask
loss's weight, same runs: 0.5 gave HiResCAM pointing 0.81 (crazing) to 0.99, 1.0 gave 0.87-0.98 at
100 % accuracy, 2.0 gave 0.85-1.0 at 100 %: 1.0 is the default.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.data.preprocess import Normalisation
from edge.errors import InvalidInput
from edge.evaluate import classification_metrics
from edge.train.augment import Augmentation, PastePlan, paste_defects
from edge.train.models import FusionClassifier
from edge.train.recipe import SCRATCH_LR, flat_factor, replan_epochs
from edge.train.stop import StopOnInterrupt, stopped_at


@dataclass
class ClassifierRecipe:
    width: int = 32
    depth: int = 0                  # extra convolutions per stage (see FusionClassifier)
    context: int = 0                # dilated convolutions before the Grad-CAM layer (see FusionClassifier)
    pool: str = "attention"         # see FusionClassifier; measured on NEU-DET below
    mask_weight: float = 1.0        # weight of the auxiliary mask loss (0: off)
    balance_power: float = 1.0      # class-balanced sampling: count^-power (0 = as the data comes)
    label_smoothing: float = 0.1
    ema_decay: float = 0.998
    lr: float = SCRATCH_LR
    weight_decay: float = 5e-4
    batch_size: int = 32
    backbone: str = "scratch"       # "scratch" (FusionClassifier) or "lite0" (pretrained, edge.train.pretrained)
    precision: str = "fp32"         # "bf16": the training forward under bfloat16 autocast (see choose_precision)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClassifierData:
    x: np.ndarray                  # (N, C, S, S) raw values (physical units or [0, 1])
    y: np.ndarray                  # (N,) class indices
    masks: np.ndarray              # (N, S, S) bool
    mask_known: np.ndarray         # (N,) bool: the mask is ground truth (annotated, or the ok class)
    train: np.ndarray              # indices
    val: np.ndarray                # indices
    classes: list[str]
    norm: Normalisation
    paste: PastePlan | None = None   # where the "paste" augmentation takes defects and surfaces from


@dataclass
class FitLog:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds_per_epoch: float = 0.0
    replans: list[dict] = field(default_factory=list)     # after_epoch, epochs, epoch_seconds
    stopped: dict | None = None     # Ctrl-C (edge.train.stop): in which epoch, after how many of its steps

    @property
    def epochs(self) -> int:
        """Epochs run (re-planning may have changed the plan): one history entry each."""
        return len(self.history)


def _one_cycle(opt: torch.optim.Optimizer, max_lr: float, total_steps: int, done_steps: int = 0):
    """The one-cycle schedule (rate and momentum) over `total_steps`, moved on to step `done_steps`: a run
    whose epochs are planned again mid-way goes on from where a schedule of the new length would be."""
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps, pct_start=0.15)
    with warnings.catch_warnings():       # stepping the schedule without an optimiser step is the point here
        warnings.simplefilter("ignore")
        for _ in range(done_steps):
            sched.step()
    return sched


class WeightAverage:
    """Exponential moving average of a model's weights and batch-norm statistics. The decay ramps up
    as (1 + t) / (10 + t) over the first steps, so a short run is not dominated by its random start."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for avg, cur in zip(self.module.state_dict().values(), model.state_dict().values()):
            if avg.is_floating_point():
                avg.mul_(d).add_(cur, alpha=1 - d)
            else:
                avg.copy_(cur)


def _normalise(norm: Normalisation, x: torch.Tensor) -> torch.Tensor:
    # the runtime's own NumPy code: what the deployed graph is fed is what training saw
    return torch.from_numpy(norm.apply(x.numpy()))


def mask_supervised(data: ClassifierData, recipe: ClassifierRecipe) -> bool:
    """Train the mask head against ground truth? Only when some training defect is annotated: empty masks of
    the defect-free class alone would only teach the head to say "nothing" everywhere."""
    annotated_defects = data.mask_known & data.masks.any(axis=(1, 2))
    return recipe.mask_weight > 0 and bool(annotated_defects[data.train].any())


def make_model(in_channels: int, num_classes: int, recipe: ClassifierRecipe, mask_head: bool,
               pretrained: bool = True) -> nn.Module:
    """The recipe's architecture; the pretrained backbone with its checkpoint loaded (unless `pretrained` is
    False: timing runs) and its first layers frozen."""
    if recipe.backbone == "lite0":
        from edge.train.pretrained import LiteClassifier, load_pretrained

        model = LiteClassifier(in_channels, num_classes, pool=recipe.pool, mask_head=mask_head)
        return (load_pretrained(model) if pretrained else model).freeze()
    return FusionClassifier(in_channels=in_channels, num_classes=num_classes, width=recipe.width,
                            pool=recipe.pool, depth=recipe.depth, mask_head=mask_head, context=recipe.context)


def build(data: ClassifierData, recipe: ClassifierRecipe, pretrained: bool = True) -> nn.Module:
    return make_model(data.x.shape[1], len(data.classes), recipe, mask_supervised(data, recipe), pretrained)


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 AVX512-BF16 or AMX); elsewhere (older AVX-512,
    AVX2, ARM here) oneDNN emulates it, which is no faster than float32. Private torch.cpu probes: a torch
    without them counts as no."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _autocast(recipe: ClassifierRecipe):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.precision == "bf16")


def balanced_mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the mask head's logits (N, 1, h, w) against defect cells (0/1, same shape),
    with each image's defect cells weighing together as much as the rest of that image: a positive cell of
    an image with P defect cells among C weighs (C - P) / P (at least 1), a defect-free image is plain BCE.

    Why per image: the mask head is what attention pooling reads, and where it misses a defect the
    classifier does too (magnetic-tile stand-in, 2026-11-30: of the 29 test pits, 14 of the 17 the head lit
    above 0.9 were answered pit, all 10 it left under 0.35 were called defect-free). One positive weight for the
    whole set, as before, made a broad stain of a hundred cells count a hundred times a one-cell pit, and
    the pits were learnt last and least (docs/real/README.md, *Each defect weighs the same in the mask
    loss*)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    cells = target[0].numel()
    positive = target.sum(dim=tuple(range(1, target.dim())), keepdim=True)
    weight = torch.where(target > 0, ((cells - positive) / positive.clamp(min=1.0)).clamp(min=1.0),
                         torch.ones_like(target))
    return (weight * bce).mean()


# Batch of the evaluation passes (validation after every epoch, prior correction, calibration). Smaller
# batches keep a layer's activations in the CPU's caches: on the 2-core Xeon (2026-11-30, 197 images,
# three repeats each) the pretrained backbone at 224 px took 7.5-10.5 s at 64, 4.8-6.0 s at 16 and
# 4.2-4.7 s at 8; the from-scratch network at 216 px 1.3-1.4 s at 64 and 0.57-0.78 s at 16.
EVAL_BATCH = 16


def predict(model: nn.Module, x: np.ndarray, norm: Normalisation, batch: int = EVAL_BATCH) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(_normalise(norm, torch.from_numpy(x[i:i + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def apply_prior_correction(model: nn.Module, counts: np.ndarray, power: float, tau: float) -> None:
    """Fold logits + tau * power * log(count) into the last layer's bias: the exported graphs carry it, and
    Grad-CAM (a gradient of a logit) is unchanged."""
    if tau:
        with torch.no_grad():
            model.head[-1].bias += torch.as_tensor(tau * power * np.log(np.maximum(counts, 1)), dtype=torch.float32)


def score_predictions(classes: list[str]):
    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return selection_score(classification_metrics(y_true, y_pred, classes))
    return score


WEAK_RECALL = 0.5          # a class the model misses more often than it finds
ROUGH_SUPPORT = 10         # fewer validation images of a class than this: its recall is a rough estimate


def validation_summary(metrics: dict) -> list[str]:
    """What a finished training run says about its model in words, from `classification_metrics` on the
    validation split: accuracy and every class's recall with its count, then a caution naming any class the
    split holds no image of, and one naming each class the model misses more often than it finds (the
    JSON alone left a user to spot "val_min_recall 0.125" and guess which class it was). Nothing about
    deployment is decided here: the gate does that."""
    per = metrics["per_class"]
    n = sum(v["support"] for v in per.values())
    lines = [f"validation ({n} images): accuracy {100 * metrics['accuracy']:.1f} %; recall "
             + ", ".join(f"{c} {v['recall']:.2f} ({v['support']})" if v["recall"] is not None else f"{c} - (0)"
                         for c, v in per.items())]
    unseen = [c for c, v in per.items() if v["recall"] is None]
    if unseen:
        lines.append(f"caution: the validation split holds no image of {' or '.join(unseen)} (too few images of "
                     f"{'these classes' if len(unseen) > 1 else 'that class'}): nothing here says how well the model "
                     f"finds {'them' if len(unseen) > 1 else 'it'}; check it on held-out data before it inspects parts")
    weak = [(c, v) for c, v in per.items() if v["recall"] is not None and v["recall"] < WEAK_RECALL]
    if weak:
        which = " and ".join(f"{c} ({100 * v['recall']:.0f} % of {v['support']}"
                             + (", too few to say more than roughly" if v["support"] < ROUGH_SUPPORT else "") + ")"
                             for c, v in weak)
        lines.append(f"caution: the model finds under half of the validation split's {which}. More examples of "
                     f"{'these classes' if len(weak) > 1 else 'that class'}, masks or boxes showing where the "
                     f"defects are, or longer training (--time-budget, --epochs) may help; check the model on "
                     f"held-out data (edge-xai evaluate, audit, gate) before it inspects parts")
    return lines


def selection_score(metrics: dict) -> float:
    """Validation score for keeping a checkpoint: the mean of accuracy and balanced accuracy, so a
    defect-free majority cannot win by being predicted everywhere."""
    recalls = [v["recall"] for v in metrics["per_class"].values() if v["recall"] is not None]
    return 0.5 * (metrics["accuracy"] + float(np.mean(recalls)))


def selection_score_se(metrics: dict) -> float:
    """Standard error of selection_score from the validation split's size: binomial errors of the
    accuracy and of each class's recall (smoothed, (k + 1) / (n + 2), so a recall of 0 or 1 on a few images
    is not taken as exact), the two halves' errors added (they are read on the same images). On elpv's 197
    validation cells, 8 of them p67, it is about 0.04, the size of the differences between a run's last
    epochs."""
    def var(rate: float, n: int) -> float:
        p = (rate * n + 1) / (n + 2)
        return p * (1 - p) / max(n, 1)

    per_class = [(v["recall"], v["support"]) for v in metrics["per_class"].values() if v["recall"] is not None]
    n = sum(v["support"] for v in metrics["per_class"].values())
    se_acc = var(metrics["accuracy"], n) ** 0.5
    se_bal = sum(var(r, k) for r, k in per_class) ** 0.5 / max(len(per_class), 1)
    return 0.5 * (se_acc + se_bal)


def keep_epoch(scores: list[float], errors: list[float]) -> int:
    """Which epoch's checkpoint to keep (1-based): the latest whose validation score is within one standard
    error of the best (the one-standard-error rule, Hastie et al., Elements of Statistical Learning §7.10:
    among choices the validation split cannot tell apart, the more trained one; in a one-cycle schedule the
    later weights are the annealed ones). Why: the best score on a small split is partly luck. On elpv
    (197 validation cells) the best-scoring epoch was the 5th of 11 in one run, ahead of the last epochs
    by 0.02 on a standard error of 0.04, and scored 72.9 % on the test split against 78-81 % for the
    last epochs of the runs around it; in another run the best was the 8th of 12 (test 77.4 %) while
    epochs 9-12 read 78.6-78.9 %."""
    best = int(np.argmax(scores))
    bar = scores[best] - errors[best]
    return max(i for i, v in enumerate(scores) if v >= bar) + 1


# The frozen layers' outputs are cached when they hold at most this much (elpv: 1773 images x 4 flips x
# 301 kB at 224 px = 2.1 GB).
FROZEN_CACHE_BYTES = 4 * 2 ** 30


class FrozenCache:
    """The frozen stem and first blocks of a fine-tuned backbone (LiteClassifier.frozen) compute a fixed
    function of the image: in evaluation mode, never trained. Where flips are the only augmentation, an
    image can reach them in only `views` ways, so each (image, flip) is computed once, on first use, and
    kept. Why: at 224 px on the 2-core CPU the frozen layers' forward is 0.53 s of a 1.3 s training step
    (batch 32); with every view cached a step took 0.77-0.96 s. The cached values are the ones the layers
    compute (float32), so training learns what it learnt before, a few ULPs aside."""

    def __init__(self, model: nn.Module, augmentation: Augmentation, norm: Normalisation, x_all: torch.Tensor):
        self.prefix = nn.Sequential(*model.frozen())
        self.rest = model.features[len(self.prefix):]
        self.augmentation, self.norm, self.x_all = augmentation, norm, x_all
        self.kept: dict[tuple[int, int], torch.Tensor] = {}

    @staticmethod
    def applies(model: nn.Module, recipe: ClassifierRecipe, augmentation: Augmentation, n_images: int,
                size: int) -> bool:
        """Whether a run can use it: a frozen prefix, flips as the only augmentation, float32 (bfloat16
        autocast would cache other values than the step computes), and the cache within FROZEN_CACHE_BYTES."""
        if not hasattr(model, "frozen") or recipe.precision == "bf16" or not augmentation.flips_only:
            return False
        frozen = model.frozen()
        if not frozen or any(p.requires_grad for m in frozen for p in m.parameters()):
            return False
        with torch.no_grad():
            per_image = nn.Sequential(*frozen).eval()(torch.zeros(1, model.features[0][0].in_channels, size, size)).numel() * 4
        return n_images * augmentation.views * per_image <= FROZEN_CACHE_BYTES

    def features(self, idx: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """The network's features (its Grad-CAM layer) for images `idx` flipped as `code` says."""
        keys = list(zip(idx.tolist(), code.tolist()))
        missing = [k for k, key in enumerate(keys) if key not in self.kept]
        if missing:
            sel = torch.tensor(missing)
            x = self.augmentation.apply_flips(self.x_all[idx[sel]].clone(), code[sel])
            with torch.no_grad():
                out = self.prefix(_normalise(self.norm, x).contiguous(memory_format=torch.channels_last))
            for k, f in zip(missing, out):
                self.kept[keys[k]] = f.clone()
        return self.rest(torch.stack([self.kept[key] for key in keys]).contiguous(memory_format=torch.channels_last))


def _step(model: nn.Module, data: ClassifierData, recipe: ClassifierRecipe, augmentation: Augmentation,
          idx: torch.Tensor, gen: torch.Generator, ce: nn.Module, masks_on: bool,
          tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
          cache: FrozenCache | None = None) -> torch.Tensor:
    """One training loss: augmented batch, classification loss, and the mask loss where masks are known.
    With a FrozenCache the same flips are drawn, and the frozen layers' output is read from it."""
    x_all, y_all, m_all, known_all = tensors
    if cache is not None:
        code = augmentation.flip_codes(len(idx), gen)
        mb = augmentation.apply_flips(m_all[idx].clone(), code)
    else:
        xb, mb = x_all[idx].clone(), m_all[idx].clone()
        if augmentation.paste > 0 and data.paste is not None:
            xb, mb = paste_defects(xb, mb, idx, data.paste, x_all, gen, augmentation.paste)
        xb, mb = augmentation(xb, mb, gen)
    known = known_all[idx] if masks_on else None      # the mask loss is on (see mask_supervised)
    with _autocast(recipe):           # the network in the recipe's precision; the losses below in float32
        if cache is not None:
            acts = cache.features(idx, code)
        else:
            acts = model.features(_normalise(data.norm, xb).contiguous(memory_format=torch.channels_last))
        logits = model.classify(acts)
        seg = model.segment(acts[known]) if known is not None and known.any() else None
    loss = ce(logits.float(), y_all[idx])
    if seg is not None:
        target = F.adaptive_max_pool2d(mb[known], acts.shape[2:])
        loss = loss + recipe.mask_weight * balanced_mask_loss(seg.float(), target)
    return loss


def _tensors(data: ClassifierData):
    return (torch.from_numpy(data.x), torch.from_numpy(data.y.astype(np.int64)),
            torch.from_numpy(data.masks[:, None].astype(np.float32)), torch.from_numpy(data.mask_known))


@dataclass(frozen=True)
class StepCost:
    """Seconds per training step (one batch) at one input size, measured by step_seconds."""
    full_s: float                  # through the whole network
    cached_s: float | None = None  # with the frozen layers' output read from a FrozenCache (None: none applies)

    @property
    def cached_share(self) -> float:
        """A cached step's cost relative to a full one (1 without a cache)."""
        return 1.0 if self.cached_s is None else min(self.cached_s / self.full_s, 1.0)


def step_seconds(in_channels: int, n_classes: int, size: int, recipe: ClassifierRecipe, norm: Normalisation,
                 augmentation: Augmentation, mask_loss: bool, steps: int = 3, warmup: int = 3,
                 cache_images: int = 0) -> StepCost:
    """Seconds per training step (one batch) at input `size` on this machine: the median of `steps` timed
    steps after `warmup` untimed ones, on a throwaway model and random inputs of that size (the run's own
    random stream is untouched), through the training loop's own `_step`. The first few steps of a fresh
    model run several times slower than the steady state (allocator and oneDNN primitive caches; on the
    simulator's 3-channel frames the first three batches took 3.6 s each, later ones under 1 s): timing
    them once cut an explicit --epochs 10 to 2. When a run over `cache_images` images would keep the frozen
    layers' output (FrozenCache.applies), the step is timed again with every view of the batch cached:
    what a step costs once the cache has filled (elpv at 224 px: 0.77-0.96 s against 1.3 s)."""
    gen = torch.Generator().manual_seed(12345)
    model = make_model(in_channels, n_classes, recipe, mask_loss, pretrained=False).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    n = recipe.batch_size
    x = torch.rand(n, in_channels, size, size, generator=gen)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    data = ClassifierData(x.numpy(), y.numpy(), np.zeros((n, size, size), bool), np.ones(n, bool),
                          np.arange(n), np.arange(0), [str(k) for k in range(n_classes)], norm)
    tensors = (x, y, torch.zeros(n, 1, size, size), torch.ones(n, dtype=torch.bool))
    ce = nn.CrossEntropyLoss()
    idx = torch.arange(n)

    def timed(count: int, cache: FrozenCache | None) -> list[float]:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            loss = _step(model, data, recipe, augmentation, idx, gen, ce, mask_loss, tensors, cache)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        return times

    full = float(np.median(timed(warmup + steps, None)[warmup:]))
    if not cache_images or not FrozenCache.applies(model, recipe, augmentation, cache_images, size):
        return StepCost(full)
    cache = FrozenCache(model, augmentation, norm, x)
    with torch.no_grad():
        for code in range(augmentation.views):          # every view of the batch, as late in a run
            cache.features(idx, torch.full((n,), code, dtype=torch.int64))
    # one untimed step: the cached path's first backward allocates anew
    return StepCost(full, float(np.median(timed(1 + steps, cache)[1:])))


def fit_classifier(data: ClassifierData, recipe: ClassifierRecipe, augmentation: Augmentation, epochs: int,
                   gen: torch.Generator, progress: bool = True,
                   epoch_seconds: Callable[[float], None] | None = None, deadline: float | None = None,
                   max_epochs: int | None = None,
                   epoch_factor: Callable[[int], float] | None = None) -> tuple[nn.Module, FitLog]:
    """Train; returns the weight average's checkpoint that `keep_epoch` chooses on the validation split
    (the last one without a validation split) and the per-epoch log. deadline: a time.perf_counter() by which the loop must end;
    after every epoch the number of epochs is planned again at the pace just measured (`replan_epochs`:
    fewer when the rest would overrun, up to `max_epochs` when more fit), the one-cycle schedule stretched
    or shrunk to end with the new last epoch. epoch_factor: epoch k's expected cost relative to an epoch
    without the frozen layers' cache (recipe.cache_fill_factor, from the probe's StepCost), so that the
    dear first epochs of a run whose cache is filling do not cut the plan."""
    from tqdm import tqdm

    model = build(data, recipe).to(memory_format=torch.channels_last)   # ~15 % faster convolutions on CPU
    ema = WeightAverage(model, recipe.ema_decay)
    tr = torch.from_numpy(data.train)
    counts = np.bincount(data.y[data.train], minlength=len(data.classes))
    if (counts == 0).any():
        missing = [c for c, n in zip(data.classes, counts) if n == 0]
        raise InvalidInput(f"no training samples of class {', '.join(missing)} after the validation split")
    weights = torch.from_numpy((counts.astype(np.float64) ** -recipe.balance_power)[data.y[data.train]])
    steps = max(1, len(data.train) // recipe.batch_size)      # drop the ragged last batch: BN likes full ones
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                            weight_decay=recipe.weight_decay)
    sched = _one_cycle(opt, recipe.lr, epochs * steps)
    ce = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    tensors = _tensors(data)
    masks_on = mask_supervised(data, recipe)
    log = FitLog()
    cache = None
    if FrozenCache.applies(model, recipe, augmentation, len(data.train), data.x.shape[-1]):
        cache = FrozenCache(model, augmentation, data.norm, tensors[0])
        if progress:
            print(f"the frozen layers' output is kept per image and flip after its first use "
                  f"({augmentation.views} views of {len(data.train)} images at most)", flush=True)
    states: list[dict] = []
    paces: list[float] = []
    factor = epoch_factor or flat_factor
    epoch = 0
    stop = StopOnInterrupt()
    with stop:
        while epoch < epochs:
            t0 = time.perf_counter()
            model.train()
            order = tr[torch.multinomial(weights, len(data.train), replacement=True, generator=gen)]
            bar = tqdm(range(steps), desc=f"defect epoch {epoch + 1}/{epochs}", unit="batch", disable=not progress,
                       leave=False)
            total = 0.0
            for step in bar:
                idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
                loss = _step(model, data, recipe, augmentation, idx, gen, ce, masks_on, tensors, cache)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                ema.update(model)
                total += loss.item()
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
                if stop.requested:
                    break
            bar.close()
            done_steps = step + 1
            seconds = time.perf_counter() - t0
            if epoch_seconds is not None:
                epoch_seconds(seconds)
            entry = {"epoch": epoch + 1, "loss": total / done_steps, "seconds": round(seconds, 2)}
            if len(data.val):
                out = predict(ema.module, data.x[data.val], data.norm)
                m = classification_metrics(data.y[data.val], out.argmax(1), data.classes)
                recalls = [v["recall"] for v in m["per_class"].values() if v["recall"] is not None]
                entry.update(val_accuracy=m["accuracy"], val_min_recall=min(recalls), val_score=selection_score(m),
                             val_score_se=selection_score_se(m))
                states.append(copy.deepcopy(ema.module.state_dict()))    # keep_epoch chooses among them at the end
            log.history.append(entry)
            if progress:
                print(f"defect epoch {epoch + 1}/{epochs}: loss {entry['loss']:.4f}"
                      + "".join(f" {k} {entry[k]:.4f}" for k in ("val_accuracy", "val_min_recall") if k in entry)
                      + f" ({seconds:.0f} s)", flush=True)
            epoch += 1
            if stop.requested:
                log.stopped = stopped_at(epoch, done_steps, steps, epochs)
                break
            if deadline is not None:
                # the epoch with its validation, as the pace of an epoch of factor 1 (recipe.cache_fill_factor)
                paces.append((time.perf_counter() - t0) / factor(epoch))
                pace = float(np.mean(paces[-3:]))
                replanned = replan_epochs(epochs, epoch, max(max_epochs or epochs, epochs),
                                          deadline - time.perf_counter(), max(paces[-2:]), pace, factor)
                if replanned != epochs:
                    next_s = pace * factor(epoch + 1)
                    log.replans.append({"after_epoch": epoch, "epochs": replanned, "epoch_seconds": round(next_s, 1)})
                    if progress:
                        print(f"re-planned to {replanned} epochs: the next epoch takes {next_s:.0f} s here "
                              f"(the pace of the last {min(len(paces), 3)}"
                              + (", less as the cache fills" if epoch_factor is not None else "")
                              + f") and the loop has {max(deadline - time.perf_counter(), 0) / 60:.1f} min left of "
                              f"the time budget", flush=True)
                    epochs = replanned
                    if epoch < epochs:
                        sched = _one_cycle(opt, recipe.lr, epochs * steps, epoch * steps)
    final = build(data, recipe, pretrained=False)      # the kept weights are loaded next: no checkpoint read
    if states:
        log.best_epoch = keep_epoch([h["val_score"] for h in log.history], [h["val_score_se"] for h in log.history])
        final.load_state_dict(states[log.best_epoch - 1])
    else:
        final.load_state_dict(ema.module.state_dict())
        log.best_epoch = log.epochs
    log.seconds_per_epoch = float(np.mean([h["seconds"] for h in log.history]))
    return final.eval(), log
