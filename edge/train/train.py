"""Training on the CPU, then export of the explain graphs and the manifest.

    edge-xai train --task defect  --data data/train --out models/defect  --seed 0
    edge-xai train --task thermal --data data/train --out models/thermal --seed 0
    edge-xai train --task phase   --data data/train --out models/phase   --seed 0

Deterministic given the seed and the data: seeded initialisation, seeded batch order, single-process
batching, and CPU kernels that do not reorder reductions between runs.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edge.data.arrays import Arrays, load_arrays, resolve_channels, survey
from edge.data.preprocess import Normalisation
from edge.errors import ExportError, InvalidInput
from edge.export.graphs import OPSET
from edge.export.model_dir import export_model_dir
from edge.output_folder import staged_output
from edge.runtime.calibration import MIN_SAMPLES as MIN_CALIBRATION_SAMPLES
from edge.runtime.calibration import fit_calibration
from edge.runtime.manifest import load_manifest, save_manifest, write_manifest
from edge.train.augment import PASTE_MAX_SHARE, Augmentation, plan_paste
from edge.train.models import WEIGHTS, RadiometricUNet, ResidualUNet, SurfaceFeatures, build_model, fold_batchnorm
from edge.train.recipe import SCRATCH_LR, downscale_note, parse_tile
from edge.train.stop import StopOnInterrupt, stopped_at, stopped_text


@dataclass(frozen=True)
class TaskSpec:
    channels: tuple[str, ...] | None  # None: every channel of the data
    target: str | None                # regression ground truth field
    epochs: int
    residual_channel: int = 0
    output_scale: float = 1.0         # size of the correction the head makes, in output units
    units: str = ""
    crop: int | None = None           # train on random crops (the net is fully convolutional)
    flips: tuple[int, ...] = (2, 3)   # spatial axes that may be flipped without changing the physics
    explain_quantity: str = "output"  # what IG explains by default (IGExplainer's `quantity`)


TASKS = {
    "defect": TaskSpec(None, None, epochs=16),
    # Thermal correction depends on slopes and curvature within a few pixels: 64 px crops suffice and
    # cost a quarter of full frames. The pixel pitch is an input: without it the same height map could
    # be a gentle or a steep surface (the first model, trained without it, stalled at 0.17 K MAE).
    "thermal": TaskSpec(("thermal", "height", "pixel_pitch_mm"), "true_temperature", epochs=56,
                        output_scale=2.0, units="K", crop=64, explain_quantity="correction"),
    # Phase is proportional to the x slope: a horizontal flip would negate it, so only vertical flips.
    # Large crops (96 of 128 px): counting fringes needs context from a flat reference region.
    "phase": TaskSpec(("phase",), "unwrapped_phase", epochs=15, output_scale=2 * math.pi, units="rad",
                      crop=96, flips=(2,)),
}


@dataclass
class TrainConfig:
    task: str
    epochs: int | None = None           # None: sized to the data (classifier) or the task's default
    size: int | None = None             # None: chosen from the data (classifier), 128 (regression)
    seed: int = 0
    channels: str | None = None
    batch_size: int = 32
    lr: float | None = None             # None: 2e-3 (from scratch, regression), 1e-3 (pretrained backbone)
    normalisation: str = "auto"
    balance: bool = True
    augment: str = "auto"               # comma-separated parts (augment.PARTS), "none", or "auto" (recipe.choose_augmentation)
    ok_class: str | None = None        # the defect-free class folder; None: found by its name (recipe.choose_ok_class)
    threads: int | None = None
    limit: int | None = None
    val_fraction: float = 0.1
    width: int | None = None
    time_budget_min: float | None = 14.0   # classifier: the whole run, export included (within 15 minutes)
    mask_weight: float = 1.0               # classifier: weight of the mask loss where masks/boxes exist (0: off)
    backbone: str = "auto"                 # classifier: auto, scratch or lite0 (recipe.choose_backbone)
    precision: str = "auto"                # classifier: auto, bf16 or fp32 (recipe.choose_precision)
    context: int | None = None             # classifier: dilated context layers; None: recipe.choose_context
    # thermal: "residual" (output = reading + learnt correction), "radiometric" (the camera's inversion in
    # the graph, the network estimating the emissivity ratio from the surface: models.RadiometricUNet; needs
    # the surroundings' temperature, which the simulator's recipe gives) or "auto" (choose_head)
    head: str = "auto"
    # classifier: "auto" (cut large frames into tiles where their defects are too small to be letterboxed
    # whole: recipe.choose_tiling), "off", or a tile side in pixels
    tile: str | int = "auto"
    # mm per pixel of the training images that record none (photographs; an .npz's own pitch is kept): served
    # frames of a pitch outside the training images' are then read at the training pitch (edge.explain.frame_view)
    pixel_pitch_mm: float | None = None


def _split(labels: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices."""
    rng = np.random.default_rng(seed)
    labels_arr = np.array(labels)
    train, val = [], []
    for cls in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(labels_arr == cls))
        k = int(round(len(idx) * fraction)) if len(idx) > 1 else 0
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, int)), np.sort(np.array(val, int))


def _class_order(labels: list[str], ok_class: str | None) -> list[str]:
    classes = sorted(set(labels))
    if ok_class in classes:  # 'no defect' first, a convention the HMI and audit rely on
        classes.remove(ok_class)
        classes.insert(0, ok_class)
    return classes


def _random_crop(xb: torch.Tensor, yb: torch.Tensor, crop: int, gen: torch.Generator):
    h, w = xb.shape[2:]
    i = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
    j = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
    return xb[:, :, i:i + crop, j:j + crop], yb[:, :, i:i + crop, j:j + crop]


def _predict_batches(model: nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(outs)


def _manifest_base(out: Path, cfg: TrainConfig, data: Path, arrays: Arrays, n_train: int, n_val: int) -> dict:
    # each sample's pitch: its own where it records one (.npz), else --pixel-pitch-mm. Training letterboxes
    # every sample at its own pixel size, so the model learns defects at all of these pitches: their range
    # is what a served frame is read within (edge.explain.frame.pitch_ratio)
    pitches = [float(p) for p in (m.get("pixel_pitch_mm") or cfg.pixel_pitch_mm for m in arrays.meta) if p]
    recipe_path = Path(data) / "dataset.json"
    return {
        "name": out.name, "task": cfg.task, "channels": list(arrays.channel_names), "opset": OPSET,
        "pixel_pitch_mm": float(np.median(pitches)) if pitches else None,
        "pixel_pitch_range_mm": [min(pitches), max(pitches)] if pitches else None,
        "training": {"config": asdict(cfg), "samples": int(n_train),
                     "validation_samples": int(n_val), "torch": torch.__version__,
                     "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                     "data": json.loads(recipe_path.read_text()) if recipe_path.is_file() else {"folder": str(data)}},
    }


def train(data: Path, out: Path, cfg: TrainConfig, progress: bool = True) -> dict:
    """Train, export and write the model folder. Returns a summary (validation metrics, timings)."""
    if cfg.task not in TASKS:
        raise InvalidInput(f"unknown task {cfg.task!r}; expected one of {', '.join(TASKS)}")
    if cfg.epochs is not None and cfg.epochs < 1:
        raise InvalidInput("--epochs must be at least 1")
    if cfg.head not in HEADS:
        raise InvalidInput(f"--head {cfg.head!r}: expected {', '.join(HEADS)}")
    if cfg.head not in ("auto", "residual") and cfg.task != "thermal":
        raise InvalidInput(f"--head {cfg.head}: only the thermal model has a choice of head")
    if parse_tile(cfg.tile) != "auto" and cfg.task != "defect":
        raise InvalidInput(f"--tile {cfg.tile}: only the defect classifier trains on tiles")
    out = Path(out)            # refused when not empty by staged_output below, before anything is read
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fit = _train_classifier if cfg.task == "defect" else _train_regression
    try:
        # the model folder appears when it is complete: a run stopped halfway (Ctrl-C, an error) leaves
        # nothing under OUT that serve or audit could take for a model; a failed export keeps the weights
        with staged_output(out, keep_on=(ExportError,)) as work:
            result = fit(Path(data), work, cfg, progress)
    except ExportError as e:
        after = (f"; then `edge-xai calibrate --model {out} --data HELD_OUT_DIR` fits the confidence calibration "
                 "and the review flag that training fits after the export") if cfg.task == "defect" else ""
        raise ExportError(f"{e}. The trained weights are kept in {out / WEIGHTS}: `edge-xai export --model {out}` "
                          f"exports the graphs again{after}") from e
    return {**result, "model": str(out)}


def _train_classifier(data: Path, out: Path, cfg: TrainConfig, progress: bool) -> dict:
    """Survey the data, cut it into tiles where its frames are too large for its defects (`choose_tiling`),
    then fit, export and calibrate (`_fit_classifier`)."""
    import tempfile

    from edge.train.recipe import choose_ok_class, choose_size, choose_tiling
    from edge.train.tiled import TrainingTiles

    t_start = time.perf_counter()
    found = survey(data, cfg.limit, cfg.seed, progress)
    ok_class, ok_reason = choose_ok_class(sorted(set(found.labels)), cfg.ok_class)
    classes = _class_order(found.labels, ok_class)
    if len(classes) < 2:
        raise InvalidInput(f"{data}: need at least two class folders to train a classifier, found {classes}")
    tile, tile_reason = choose_tiling(found.shapes, found.defect_widths_px, found.labels, found.annotated, ok_class,
                                      cfg.size or choose_size(found.shapes, found.defect_widths_px).size, cfg.tile)
    if progress and tile_reason:
        print(f"tiles: {tile_reason}", flush=True)
    if not tile:
        return _fit_classifier(data, out, cfg, progress, t_start, found, ok_class, ok_reason, classes, None, tile_reason)
    tr, va = _split(found.labels, cfg.val_fraction, cfg.seed)
    workdir = Path(tempfile.mkdtemp(prefix="edge-xai-train-tiles-"))
    with TrainingTiles.cut(data, found, tile, ok_class, tr, va, cfg.seed, workdir, progress) as tiles:
        if progress:
            d = tiles.describe()
            print(f"tiles: {d['train']['frames']} training frames -> {d['train']['tiles']} tiles "
                  f"({', '.join(f'{k} {n}' for k, n in d['train']['classes'].items())})"
                  + (f", {d['val']['frames']} validation frames -> {d['val']['tiles']}" if "val" in d else "")
                  + (f"; clean tiles thinned to {100 * tiles.clean_share:.0f} % to keep the set in memory"
                     if tiles.clean_share < 1 else ""), flush=True)
        tile_classes = _class_order(tiles.survey.labels, ok_class)
        if tile_classes != classes:
            missing = sorted(set(classes) - set(tile_classes))
            raise InvalidInput(f"{data}: cut into {tile} px tiles, no training tile of class {', '.join(missing)} "
                               f"was left (their defects lie across tiles or are unannotated); train on whole "
                               f"frames with --tile off, or choose a larger --tile")
        return _fit_classifier(data, out, cfg, progress, t_start, tiles.survey, ok_class, ok_reason, classes, tiles,
                               tile_reason)


def _fit_classifier(data: Path, out: Path, cfg: TrainConfig, progress: bool, t_start: float, found,
                    ok_class: str | None, ok_reason: str, classes: list[str], tiles, tile_reason: str) -> dict:
    """Fit, export and calibrate on `found` (a survey of the frames, or of the training tiles when `tiles`)."""
    from edge.train.classifier import (ClassifierData, ClassifierRecipe, StepCost, apply_prior_correction,
                                       bf16_native, fit_classifier, predict, score_predictions, step_seconds,
                                       validation_summary)
    from edge.train import recipe as rules
    from edge.train.pretrained import weights_file, weights_installed
    from edge.train.recipe import (after_loop_seconds, choose_augmentation, choose_backbone, choose_context,
                                   choose_epochs, choose_pool, choose_precision, choose_prior_correction, choose_size)

    mode = cfg.normalisation
    if mode == "auto":
        mode = "per_image" if found.photographs else "centred"
    mask_loss = cfg.mask_weight > 0 and bool(found.defect_widths_px)
    pool, pool_reason = choose_pool(mask_loss)
    backbone, backbone_reason = choose_backbone(cfg.backbone, found.photographs, mask_loss, weights_installed())
    pretrained = backbone == "lite0"
    precision, precision_reason = choose_precision(cfg.precision, bf16_native(), pretrained)
    context, context_reason = choose_context(cfg.context, found.photographs, backbone)
    if pretrained:
        weights_file()                      # a missing weights package is said now, not after the data loads
    schedule = rules.SCHEDULES[backbone]
    recipe = ClassifierRecipe(width=cfg.width or 32, lr=cfg.lr or schedule.lr,
                              batch_size=cfg.batch_size, pool=pool, backbone=backbone,
                              balance_power=1.0 if cfg.balance else 0.0, mask_weight=cfg.mask_weight,
                              precision=precision, context=context)
    square = all(h == w for h, w in found.shapes)
    augment, augment_reason = choose_augmentation(cfg.augment, found.photographs, ok_class is not None, mask_loss,
                                                  backbone)
    augmentation = Augmentation.parse(augment, square=square, photographs=found.photographs)
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else None
    n_channels = len(resolve_channels(found.channel_names, cfg.channels))
    n_train = len(found.labels) if tiles is not None else int(len(found.labels) * (1 - cfg.val_fraction))
    steps = max(1, n_train // recipe.batch_size)
    probe_norm = Normalisation("per_image")           # as costly as any mode; fitted statistics come later

    measured: dict[int, StepCost] = {}       # seconds per training step, by size

    def step_cost(size: int) -> StepCost:
        # Measured once per size: the size is chosen so that the planned epochs fit at this speed, and the
        # epochs are then cut at the same figure (a second probe, disturbed by other work on the machine,
        # once read 92 s where the first had read under 55 and the epochs took 42, and cut 13 epochs to 7).
        # The loop itself plans again at the pace its epochs really take (fit_classifier's deadline).
        if size not in measured:
            measured[size] = step_seconds(n_channels, len(classes), size, recipe, probe_norm, augmentation,
                                          mask_loss, cache_images=n_train)
        return measured[size]

    def step_s(size: int) -> float:
        return step_cost(size).full_s

    # a forward pass over the validation split is about a third of a training step per image
    val_share = cfg.val_fraction / max(1 - cfg.val_fraction, 1e-9) / 3

    def epoch_seconds(size: int) -> float:
        """An epoch with its validation, without the frozen layers' cache."""
        return step_s(size) * steps * (1 + val_share)

    def epoch_factor(size: int):
        """Epoch k's cost relative to epoch_seconds where the frozen layers' cache applies (None: it does
        not); the validation pass is not cached."""
        cost = step_cost(size)
        if cost.cached_s is None:
            return None
        return rules.cache_fill_factor((cost.cached_share + val_share) / (1 + val_share), augmentation.views)

    def mean_epoch_seconds(size: int, epochs: int) -> float:
        return epoch_seconds(size) * rules.epochs_cost(epoch_factor(size), 1, epochs) / epochs

    def loop_budget(size: int) -> float | None:
        """What the time budget leaves for the training loop: the budget less what the run has spent so
        far and what the export and calibration after the loop will take at this size."""
        if not budget_s:
            return None
        return budget_s - (time.perf_counter() - t_start) - after_loop_seconds(step_s(size), backbone)

    choice = choose_size(found.shapes, found.defect_widths_px)
    if cfg.size:
        size, size_reason = cfg.size, f"--size {cfg.size}"
    else:
        native_p10 = float(np.percentile(found.defect_widths_px, 10)) if found.defect_widths_px else None
        long_side = choice.long_side
        needed, why = rules.cap_for_pretrained(choice.size, choice.reason) if pretrained else (choice.size, choice.reason)
        planned, _ = choose_epochs(n_train, cfg.epochs, None, None, schedule.samples_seen, schedule.min_epochs)
        size, lowered = rules.fit_size_in_tiers(needed, long_side, native_p10, mean_epoch_seconds, loop_budget,
                                                planned, schedule.min_fit_epochs, schedule.fit_share)
        size_reason = why + lowered
        if not found.defect_widths_px and tiles is None:
            size_reason += downscale_note(long_side, size)
    if progress:
        print(f"defect-free class: {f'{ok_class} ({ok_reason})' if ok_class else ok_reason}", flush=True)
        print(f"network: {backbone_reason}", flush=True)
        print(f"input size {size} px: {size_reason}", flush=True)
        print(f"pooling: {pool_reason}", flush=True)
        if not pretrained:
            print(f"context: {context_reason}", flush=True)
        print(f"precision: {precision_reason}", flush=True)
        print(f"augmentation: {augment_reason}", flush=True)
        if cfg.pixel_pitch_mm:
            print(f"pixel pitch {cfg.pixel_pitch_mm:g} mm (--pixel-pitch-mm, for the images that record none): frames "
                  f"sent with a pitch outside the training images' are read at the training pitch, and sentences give "
                  f"places in mm", flush=True)
    if tiles is not None:
        arrays, tr, va = tiles.load(size, cfg.channels, progress)
    else:
        arrays = load_arrays(data, size, cfg.channels, limit=cfg.limit, seed=cfg.seed, progress=progress)
        tr, va = _split(arrays.labels, cfg.val_fraction, cfg.seed)
    if len(tr) == 0:
        raise InvalidInput(f"{data}: no training samples left after the validation split")
    y = np.array([classes.index(lbl) for lbl in arrays.labels])
    norm = Normalisation.fit(arrays.x[tr], mode) if mode in ("dataset", "centred") else Normalisation(mode)
    ok_index = classes.index(ok_class) if ok_class else -1
    mask_known, unmarked = mask_ground_truth(arrays.has_mask, arrays.masks, y, ok_index)
    if progress and unmarked.any():
        print(f"masks: {unmarked_note(unmarked, arrays.paths, Path(data))}", flush=True)
    paste = None
    if augmentation.paste > 0:
        content = np.array([[p.top, p.left, p.h, p.w] for p in arrays.placements], np.int64)
        paste = plan_paste(arrays.masks, arrays.has_mask, content, y, tr, ok_index)
        if progress:
            why_off = ("no defect-free class to lend its surfaces" if ok_index < 0 else
                       f"no annotated training defect covers at most {100 * PASTE_MAX_SHARE:.0f} % of its frame clear "
                       "of its border")
            print("paste: " + (f"{paste.donor_count} training defects small enough to lend, "
                               f"{len(paste.surfaces)} defect-free surfaces" if paste else f"off: {why_off}"),
                  flush=True)
    cd = ClassifierData(arrays.x, y, arrays.masks, mask_known, tr, va, classes, norm, paste)
    seconds_per_epoch = epoch_seconds(size) if budget_s else None
    factor = epoch_factor(size) if budget_s else None
    loop_s = loop_budget(size)
    epochs, epochs_reason = choose_epochs(len(tr), cfg.epochs, seconds_per_epoch, loop_s,
                                          schedule.samples_seen, schedule.min_epochs, factor)
    wanted, _ = choose_epochs(len(tr), cfg.epochs, None, None, schedule.samples_seen, schedule.min_epochs)
    if progress:
        print(f"training {epochs} epochs: {epochs_reason}", flush=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    deadline = time.perf_counter() + loop_s if loop_s is not None else None
    model, log = fit_classifier(cd, recipe, augmentation, epochs, gen, progress, deadline=deadline, max_epochs=wanted,
                                epoch_factor=factor)
    if log.replans:
        epochs_reason += (f"; re-planned to {log.epochs} at the pace the epochs took ("
                          + ", ".join(f"after epoch {r['after_epoch']}: {r['epochs']} at {r['epoch_seconds']} s"
                                      for r in log.replans) + ")")
        epochs = log.epochs
    if log.stopped:
        epochs_reason += "; " + stopped_text(log.stopped)
        epochs = log.epochs
        if progress:
            print(stopped_text(log.stopped), flush=True)
    counts = np.bincount(y[tr], minlength=len(classes))
    if tiles is not None:
        counts = tiles.class_counts(counts, classes, ok_class)
    tau, tau_scores = 0.0, {}
    if len(va):
        val_logits = predict(model, arrays.x[va], norm)
        tau, tau_scores = choose_prior_correction(val_logits, y[va], counts, recipe.balance_power,
                                                  score_predictions(classes))
        apply_prior_correction(model, counts, recipe.balance_power, tau)
        if progress and tau_scores:
            print(f"prior correction tau {tau} (validation score per tau: "
                  + ", ".join(f"{t}: {v:.3f}" for t, v in tau_scores.items()) + ")", flush=True)

    manifest = _manifest_base(out, cfg, data, arrays, len(tr), len(va))
    manifest["training"].update(epochs=epochs, epochs_reason=epochs_reason, recipe=recipe.to_dict(),
                                pool_reason=pool_reason, backbone_reason=backbone_reason, context_reason=context_reason,
                                precision_reason=precision_reason, ok_class_reason=ok_reason,
                                augmentation=augmentation.describe(), augmentation_reason=augment_reason,
                                paste=({"donors": paste.donor_count, "surfaces": len(paste.surfaces)}
                                       if paste is not None else None),
                                unmarked_masks=int(unmarked.sum()),
                                best_epoch=log.best_epoch, stopped=log.stopped,
                                prior_correction={"tau": tau, "validation_scores": tau_scores,
                                                  "class_counts": counts.tolist()},
                                seconds_per_epoch=round(log.seconds_per_epoch, 2))
    if tiles is not None or tile_reason:
        manifest["training"]["tiles"] = {**(tiles.describe() if tiles is not None else {"tile": None}),
                                         "reason": tile_reason}
    manifest.update(classes=classes, ok_class=ok_class,
                    target_layer=model.target_layer, output={"name": "logits", "kind": "class_scores"})
    manifest["input"] = {"size": [size, size], "layout": "NCHW", "dtype": "float32",
                         "normalisation": norm.to_dict(), "fit": "letterbox", "size_reason": size_reason,
                         "source_size": list(choice.source_size),
                         "integer_scaling": found.photographs}
    if tiles is None:       # every training image letterboxed whole: served frames up to this size are too
        manifest["input"]["source_long_max"] = choice.long_max
    kwargs = {"in_channels": arrays.x.shape[1], "num_classes": len(classes), "pool": recipe.pool}
    if not pretrained:
        kwargs.update(width=recipe.width, depth=recipe.depth, context=recipe.context)
    # The exported model's validation logits (prior correction in): its validation summary and its calibration.
    val_logits = predict(model, arrays.x[va], norm) if len(va) else np.zeros((0, len(classes)))
    validation = dict(log.history[log.best_epoch - 1])
    if len(va):           # what the exported model scores on the validation split
        from edge.evaluate import classification_metrics

        m = classification_metrics(y[va], val_logits.argmax(1), classes)
        validation.update(val_accuracy=m["accuracy"],
                          val_min_recall=min(v["recall"] for v in m["per_class"].values() if v["recall"] is not None),
                          val_recall={c: v["recall"] for c, v in m["per_class"].items()},
                          val_support={c: v["support"] for c, v in m["per_class"].items()})
        if progress:
            for line in validation_summary(m):
                print(line, flush=True)
    example = norm.apply(arrays.x[tr[:8]])
    result = _save_and_export(out, model, kwargs, manifest, log.history, validation, example, t_start)
    method, why = _choose_cam_method(out, arrays, tr, va, ok_class, cfg.seed)
    if progress:
        print(f"heatmaps: {method} ({why})", flush=True)
    final = load_manifest(out)
    final["explain"] = {"cam_method": method, "reason": why}
    # Confidence calibration on the validation split, from the exported model's logits (above).
    c = final["calibration"] = fit_calibration(val_logits, y[va], "validation split")
    if progress:
        how = c["reason"] if c["method"] == "none" else f"validation ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
        how += f"; {c['fit']}" if "fit" in c else ""
        print(f"confidence calibration: temperature {c['temperature']:.3f} ({how})", flush=True)
    write_manifest(out, final)
    if len(va) >= MIN_CALIBRATION_SAMPLES:
        _fit_review(out, arrays, y, tr, va, cfg.seed, progress)
    return result


def _fit_review(out: Path, arrays: Arrays, y: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int,
                progress: bool, max_fit: int = 2000) -> None:
    """The review flag from the exported model (calibration in place): its embedding model on training
    samples (at most `max_fit`, seeded), its thresholds on the validation split, for a 10 % budget (a node
    re-derives them for its own [serve] review_budget)."""
    from edge.explain import review
    from edge.runtime.model import Model

    fit = np.sort(np.random.default_rng(seed).permutation(tr)[:max_fit])
    model = Model.load(out)
    policy, scores = review.fit_for_model(model, arrays.x[fit], y[fit], arrays.x[va])
    entry = review.save(out, policy, scores, f"training data ({len(fit)} samples, embeddings) and the validation "
                                             f"split ({len(va)} samples, thresholds)")
    if progress:
        print(f"review flag: below {entry['min_confidence']:.3f} confidence, embedding distance above "
              f"{entry['max_distance']:.1f}" + (f", defect maps concentrating under {entry['min_concentration']:.3f}"
                                                 if entry["min_concentration"] is not None else "")
              + (f" (a {100 * entry['budget']:.0f} % budget, held with {100 * entry['budget_confidence']:.0f} % "
                 f"probability at the validation split's {entry['n_held_out']} parts)" if entry["budget_held"] else
                 f" (a {100 * entry['budget']:.0f} % budget; the validation split's {entry['n_held_out']} parts are too "
                 f"few to hold it surely: refit the flag on more held-out data with `edge-xai calibrate --data DIR`)"),
              flush=True)


# Annotated training samples per class that join the validation split when training chooses the heatmap
# method. Why: the choice reads each class's pointing game, and a validation split of 100 parts holds 2-9
# defects of a rare class, 3 answered right: on a tile-shapes-sim run (2026-11-30) three pits made
# HiResCAM look best (worst class 1.00 against 0.60), while on 31 training pits and on the 9 test pits
# answered right element-wise Grad-CAM pointed at 0.71 and 1.00 against HiResCAM's 0.42 and 0.56, and the
# gate failed the model on pit localisation. The four methods differ in how they read the same model's
# gradients, not in what the model learnt, so the training images rank them as held-out ones do.
CAM_CHOICE_TRAINING_PER_CLASS = 30


def cam_choice_samples(labels: list[str], annotated: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int,
                       per_class: int = CAM_CHOICE_TRAINING_PER_CLASS) -> tuple[np.ndarray, int]:
    """Indices the heatmap method is chosen on: the validation split, and up to `per_class` annotated
    training samples of each class (seeded). Returns (indices, training samples added)."""
    rng = np.random.default_rng(seed)
    picked: dict[str, list[int]] = {}
    for i in rng.permutation(np.asarray(tr, np.int64)[np.asarray(annotated)[tr]]):
        chosen = picked.setdefault(labels[i], [])
        if len(chosen) < per_class:
            chosen.append(int(i))
    extra = np.sort(np.array([i for idx in picked.values() for i in idx], np.int64))
    return np.concatenate([np.asarray(va, np.int64), extra]), len(extra)


def marked_masks(has_mask: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) bool: the samples whose mask (or filled boxes) marks some pixel."""
    return has_mask & masks.reshape(len(masks), -1).any(axis=1)


def mask_ground_truth(has_mask: np.ndarray, masks: np.ndarray, y: np.ndarray,
                      ok_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(known, unmarked): which samples' masks the mask loss may learn from, and which defect images have a
    mask file that marks nothing. An image of the defect-free class has an empty mask by definition: ground
    truth. A defect image whose mask is empty is not: the defect is there and the mask failed to say where
    (an annotation left out, a mask exported blank), and learning "nothing here" from it would teach the
    head, and the attention it guides, to look away from that defect. Such an image trains the classifier
    as an unannotated one does, as the tiled path and the audit read it too."""
    marked = marked_masks(has_mask, masks)
    defect_free = y == ok_index
    return marked | defect_free, has_mask & ~marked & ~defect_free


def unmarked_note(unmarked: np.ndarray, paths: list[Path], data: Path) -> str:
    """One line naming the defect images whose mask marks nothing (a few of them by file)."""
    from edge.data.loader import sample_names

    files = [paths[i] for i in np.flatnonzero(unmarked)]
    named = sample_names(files[:3], data)
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return (f"{len(files)} defect image{'s' if len(files) != 1 else ''} with a mask that marks nothing "
            f"({', '.join(named)}{more}): trained as unannotated (no mask loss on them); check those masks")


def _choose_cam_method(out: Path, arrays: Arrays, tr: np.ndarray, va: np.ndarray, ok_class: str | None,
                       seed: int) -> tuple[str, str]:
    """Which Grad-CAM-family map localises this model's decisions best, from the exported graphs, on the
    validation samples with masks or boxes and some annotated training samples (`cam_choice_samples`;
    `audit.localisation.choose_cam`, the rule calibrate's --choose-cam applies to held-out data)."""
    from edge.audit.localisation import choose_cam
    from edge.runtime.model import Model

    idx, added = cam_choice_samples(arrays.labels, marked_masks(arrays.has_mask, arrays.masks), tr, va, seed)
    where = "the validation split" + (f" and {added} annotated training samples" if added else "")
    method, why, _ = choose_cam(Model.load(out), arrays.x[idx], arrays.masks[idx], arrays.has_mask[idx],
                                [arrays.labels[i] for i in idx], ok_class, where)
    return method, why


def _reload(meta: dict, state: dict) -> nn.Module:
    """The saved weights in a fresh instance of the exported architecture (what weights.pt reloads to)."""
    model = build_model(meta)
    model.load_state_dict(state)
    return model


def _save_and_export(out: Path, model: nn.Module, kwargs: dict, manifest: dict, history: list, validation: dict,
                     example: np.ndarray, t_start: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": type(model).__name__, "kwargs": kwargs, "task": manifest["task"]}
    # What the exported architecture holds: a mask head used only as a training loss is left out.
    wanted = build_model(meta).state_dict().keys()
    state = {k: v for k, v in model.state_dict().items() if k in wanted}
    torch.save({"state_dict": state, "meta": meta}, out / WEIGHTS)
    manifest["training"].update(history=history, seconds=round(time.perf_counter() - t_start, 1))
    manifest["validation"] = validation
    save_manifest(out, manifest)  # provisional; export adds the graphs and the files' hashes
    # an ExportError keeps the weights: train() publishes the folder and says how to finish it by hand
    exported = export_model_dir(out, fold_batchnorm(_reload(meta, state)), example=example)
    return {"model": str(out), "validation": manifest["validation"], "parity": exported["parity"],
            "seconds": round(time.perf_counter() - t_start, 1)}


HEADS = ("auto", "residual", "radiometric")


def choose_head(requested: str, task: str, env_k: float | None, channels: list[str]) -> tuple[str, str]:
    """The regression model's head and why. auto: for the thermal model, the radiometric head where the
    data gives the surroundings' temperature (the camera's inversion needs it) and the input has a height
    and a pixel-pitch plane (the surface whose slopes and curvatures set the emissivity); the residual head
    otherwise. Measured on simulated parts (2026-12-01, the shipped recipe, 600 held-out frames each of
    seeds 2000 and 7000): MAE 0.089 and 0.087 K against the residual head's 0.127 and 0.126, and its
    Integrated Gradients from `ambient` follow the physics at r 0.92-0.97 on every shaped geometry (the
    residual head's from `uniform`: 0.75-0.86; README, *What the thermal IG explains*)."""
    if task != "thermal":
        return "residual", ""
    if requested != "auto":
        return requested, f"--head {requested}"
    missing = [c for c in SurfaceFeatures.PLANES if c not in channels]
    if env_k is None:
        return "residual", ("residual: the data set's dataset.json gives no surroundings' temperature "
                            "(config.env_temperature_k), which the radiometric head's inversion needs")
    if missing:
        return "residual", (f"residual: the input has no {' or '.join(missing)} plane, from which the radiometric "
                            "head reads the surface")
    return "radiometric", (f"radiometric: the surroundings' temperature is known ({env_k} K) and the input has "
                           "the surface's height and pitch, so the model inverts the camera's radiometry itself "
                           "and learns only the emissivity from the surface's slopes and curvatures (more "
                           "accurate than the residual head on simulated parts, and its IG follows the "
                           "physics; --head residual for the other)")


def _surface_features(names: list[str], x: np.ndarray) -> dict | None:
    """RadiometricUNet's `surface` argument where the input has a height and a pixel-pitch plane (the net
    then reads slopes and curvatures, `models.SurfaceFeatures`), with their statistics on the frames `x`
    (up to 512 of them); None otherwise (the net reads the shape planes as they are)."""
    if any(c not in names for c in SurfaceFeatures.PLANES):
        return None
    height, pitch = SurfaceFeatures.PLANES
    surface = {"height": names.index(height), "pitch": names.index(pitch)}
    with torch.no_grad():
        raw = SurfaceFeatures(x.shape[1], **surface).raw(torch.from_numpy(x[:512]))
    surface.update(mean=raw.mean(dim=(0, 2, 3)).tolist(), std=raw.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())
    return surface


def _train_regression(data: Path, out: Path, cfg: TrainConfig, progress: bool) -> dict:
    from tqdm import tqdm

    spec = TASKS[cfg.task]
    epochs = cfg.epochs or spec.epochs
    size = cfg.size or 128
    t_start = time.perf_counter()
    targets = (spec.target,)
    channels = cfg.channels if cfg.channels is not None else spec.channels
    arrays: Arrays = load_arrays(data, size, channels, targets, limit=cfg.limit, seed=cfg.seed, progress=progress)
    tr, va = _split(arrays.labels, cfg.val_fraction, cfg.seed)
    if len(tr) == 0:
        raise InvalidInput(f"{data}: no training samples left after the validation split")
    gen = torch.Generator().manual_seed(cfg.seed)
    manifest = _manifest_base(out, cfg, data, arrays, len(tr), len(va))
    manifest["training"]["epochs"] = epochs
    x = arrays.x
    norm = Normalisation("in_graph")
    fit = Normalisation.fit(arrays.x[tr])
    kwargs = {"in_channels": x.shape[1], "residual_channel": spec.residual_channel,
              "output_scale": spec.output_scale, "mean": fit.mean, "std": fit.std, "width": cfg.width or 16}
    env_k = manifest["training"]["data"].get("config", {}).get("env_temperature_k")
    head, head_reason = choose_head(cfg.head, cfg.task, env_k, list(arrays.channel_names))
    if head_reason:
        manifest["training"]["head"] = head_reason
        if progress and cfg.head == "auto":
            print(f"head: {head_reason}", flush=True)
    radiometric = head == "radiometric"
    if radiometric:
        if env_k is None:
            raise InvalidInput(f"--head radiometric: {data}/dataset.json gives no surroundings' temperature "
                               "(config.env_temperature_k), which the camera's inversion needs")
        kwargs.update(env_k=float(env_k), blind=[spec.residual_channel])
        surface = _surface_features(list(arrays.channel_names), x[tr[:512]])   # the statistics' sample
        if surface:
            kwargs["surface"] = surface
        model = RadiometricUNet(**kwargs)
        if progress and cfg.head != "auto":          # auto has said why already
            what = ("the surface's slopes and curvatures (from the height and pitch planes)" if surface else
                    f"the shape ({', '.join(c for i, c in enumerate(channels) if i != spec.residual_channel)})")
            print(f"head: the camera's radiometric inversion, surroundings at {env_k} K; the emissivity ratio "
                  f"estimated from {what} only", flush=True)
    else:
        model = ResidualUNet(**kwargs)
    yt = torch.from_numpy(arrays.targets[spec.target][:, None])
    loss_fn = nn.SmoothL1Loss(beta=0.1 * spec.output_scale)
    manifest.update(output={"name": "output", "kind": "dense", "units": spec.units, "field": spec.target,
                            "residual_channel": spec.residual_channel},
                    in_graph_normalisation=fit.to_dict())
    if spec.explain_quantity != "output":
        manifest["explain"] = {"quantity": spec.explain_quantity}
    if radiometric:
        # IG from the part at the surroundings' temperature: every correction is then handed to the pixel
        # whose reading needed it (see RadiometricUNet), the protocol the audit judges such a model by
        manifest["output"].update(ambient=float(env_k), head="radiometric",
                                  emissivity_from=[c for i, c in enumerate(channels) if i != spec.residual_channel])
        manifest.setdefault("explain", {})["baseline"] = "ambient"
    manifest["input"] = {"size": [size, size], "layout": "NCHW", "dtype": "float32",
                         "normalisation": norm.to_dict()}

    flips = Augmentation(flips=spec.flips if cfg.augment != "none" else ())
    xt = torch.from_numpy(x)
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    lr = cfg.lr or SCRATCH_LR
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    tr_t = torch.from_numpy(tr)
    history = []
    stop = StopOnInterrupt()
    with stop:
        for epoch in range(epochs):
            model.train()
            order = tr_t[torch.randperm(len(tr), generator=gen)]
            bar = tqdm(range(steps_per_epoch), desc=f"{cfg.task} epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=not progress, leave=False)
            total = 0.0
            for step in bar:
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                xb, yb = xt[idx].clone(), yt[idx].clone()
                xb, yb = flips(xb, yb, gen)
                if spec.crop and spec.crop < size:
                    xb, yb = _random_crop(xb, yb, spec.crop, gen)
                loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
                if stop.requested:
                    break
            bar.close()
            val = _validate(model, cfg.task, x[va], arrays, va, spec) if len(va) else {}
            history.append({"epoch": epoch + 1, "loss": total / (step + 1), **val})
            if progress:
                print(f"{cfg.task} epoch {epoch + 1}/{epochs}: loss {total / (step + 1):.4f} "
                      + " ".join(f"{k} {v:.4f}" for k, v in val.items() if isinstance(v, float)), flush=True)
            if stop.requested:
                stopped = stopped_at(epoch + 1, step + 1, steps_per_epoch, epochs)
                manifest["training"].update(epochs=epoch + 1, stopped=stopped)
                if progress:
                    print(stopped_text(stopped), flush=True)
                break
    return _save_and_export(out, model, kwargs, manifest, history, history[-1] if history else {},
                            x[tr[:8]], t_start)


def _validate(model, task, xv, arrays, va, spec) -> dict:
    out = _predict_batches(model, xv)
    truth = arrays.targets[spec.target][va]
    metrics = {"val_mae": float(np.abs(out[:, 0] - truth).mean())}
    if task == "phase":
        from edge.sim.optics import fringe_order
        wrapped = xv[:, 0]
        metrics["val_fringe_order_accuracy"] = float(
            (fringe_order(out[:, 0], wrapped) == fringe_order(truth, wrapped)).mean())
    return metrics
