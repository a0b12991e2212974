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

from edge.data.arrays import Arrays, load_arrays
from edge.data.preprocess import Normalisation
from edge.evaluate import classification_metrics
from edge.export.graphs import OPSET, check_parity, export_graphs
from edge.runtime.manifest import write_manifest
from edge.train.models import FusionClassifier, ResidualUNet, fold_batchnorm

WEIGHTS = "weights.pt"


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


TASKS = {
    "defect": TaskSpec(None, None, epochs=16),
    # Thermal correction depends on slopes and curvature within a few pixels: 64 px crops suffice and
    # cost a quarter of full frames. The pixel pitch is an input: without it the same height map could
    # be a gentle or a steep surface (the first model, trained without it, stalled at 0.17 K MAE).
    "thermal": TaskSpec(("thermal", "height", "pixel_pitch_mm"), "true_temperature", epochs=56,
                        output_scale=2.0, units="K", crop=64),
    # Phase is proportional to the x slope: a horizontal flip would negate it, so only vertical flips.
    # Large crops (96 of 128 px): counting fringes needs context from a flat reference region.
    "phase": TaskSpec(("phase",), "unwrapped_phase", epochs=15, output_scale=2 * math.pi, units="rad",
                      crop=96, flips=(2,)),
}


@dataclass
class TrainConfig:
    task: str
    epochs: int | None = None
    size: int = 128
    seed: int = 0
    channels: str | None = None
    batch_size: int = 32
    lr: float = 2e-3
    normalisation: str = "auto"
    balance: bool = True
    augment: bool = True
    ok_class: str = "ok"
    threads: int | None = None
    limit: int | None = None
    val_fraction: float = 0.1
    width: int | None = None


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


def _class_order(labels: list[str], ok_class: str) -> list[str]:
    classes = sorted(set(labels))
    if ok_class in classes:  # 'no defect' first, a convention the HMI and audit rely on
        classes.remove(ok_class)
        classes.insert(0, ok_class)
    return classes


def _augment(xb: torch.Tensor, yb: torch.Tensor | None, axes: tuple[int, ...], gen: torch.Generator):
    for axis in axes:
        flip = torch.rand(xb.shape[0], generator=gen) < 0.5
        if flip.any():
            xb[flip] = xb[flip].flip(axis)
            if yb is not None and yb.dim() == 4:
                yb[flip] = yb[flip].flip(axis)
    return xb, yb


def _random_crop(xb: torch.Tensor, yb: torch.Tensor, crop: int, gen: torch.Generator):
    h, w = xb.shape[2:]
    i = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
    j = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
    return xb[:, :, i:i + crop, j:j + crop], yb[:, :, i:i + crop, j:j + crop]


def build_model(meta: dict) -> nn.Module:
    """A model from the constructor arguments stored in weights.pt."""
    kind = meta["architecture"]
    if kind == "FusionClassifier":
        return FusionClassifier(**meta["kwargs"])
    if kind == "ResidualUNet":
        return ResidualUNet(**meta["kwargs"])
    raise ValueError(f"unknown architecture {kind!r}")


def _predict_batches(model: nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(outs)


def train(data: Path, out: Path, cfg: TrainConfig, progress: bool = True) -> dict:
    """Train, export and write the model folder. Returns a summary (validation metrics, timings)."""
    from tqdm import tqdm

    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; expected one of {', '.join(TASKS)}")
    spec = TASKS[cfg.task]
    epochs = cfg.epochs or spec.epochs
    if epochs < 1:
        raise ValueError("--epochs must be at least 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out folder")
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()

    channels = cfg.channels if cfg.channels is not None else spec.channels
    targets = (spec.target,) if spec.target else ()
    arrays: Arrays = load_arrays(data, cfg.size, channels, targets, limit=cfg.limit, seed=cfg.seed, progress=progress)
    tr, va = _split(arrays.labels, cfg.val_fraction, cfg.seed)
    if len(tr) == 0:
        raise ValueError(f"{data}: no training samples left after the validation split")
    gen = torch.Generator().manual_seed(cfg.seed)

    pitches = [m["pixel_pitch_mm"] for m in arrays.meta if "pixel_pitch_mm" in m]
    recipe_path = Path(data) / "dataset.json"
    manifest: dict = {
        "name": out.name, "task": cfg.task, "channels": list(arrays.channel_names), "opset": OPSET,
        "pixel_pitch_mm": float(np.median(pitches)) if pitches else None,
        "training": {"config": asdict(cfg), "epochs": epochs, "samples": int(len(tr)),
                     "validation_samples": int(len(va)), "torch": torch.__version__,
                     "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                     "data": json.loads(recipe_path.read_text()) if recipe_path.is_file() else {"folder": str(data)}},
    }

    if cfg.task == "defect":
        classes = _class_order(arrays.labels, cfg.ok_class)
        if len(classes) < 2:
            raise ValueError(f"{data}: need at least two class folders to train a classifier, found {classes}")
        y = np.array([classes.index(lbl) for lbl in arrays.labels])
        mode = cfg.normalisation
        if mode == "auto":
            mode = "centred" if all(p.suffix == ".npz" for p in arrays.paths) else "per_image"
        norm = Normalisation.fit(arrays.x[tr], mode) if mode in ("dataset", "centred") else Normalisation(mode)
        x = norm.apply(arrays.x)
        kwargs = {"in_channels": x.shape[1], "num_classes": len(classes), "width": cfg.width or 32}
        model = FusionClassifier(**kwargs)
        loss_fn = nn.CrossEntropyLoss()
        yt = torch.from_numpy(y)
        manifest.update(classes=classes, ok_class=cfg.ok_class if cfg.ok_class in classes else None,
                        target_layer="features.6", output={"name": "logits", "kind": "class_scores"})
        # Class-balanced sampling: rare defect classes are seen as often as common ones.
        counts = np.bincount(y[tr], minlength=len(classes))
        weights = torch.from_numpy((1.0 / counts[y[tr]]).astype(np.float64)) if cfg.balance else None
    else:
        x = arrays.x
        norm = Normalisation("in_graph")
        fit = Normalisation.fit(arrays.x[tr])
        kwargs = {"in_channels": x.shape[1], "residual_channel": spec.residual_channel,
                  "output_scale": spec.output_scale, "mean": fit.mean, "std": fit.std, "width": cfg.width or 16}
        model = ResidualUNet(**kwargs)
        yt = torch.from_numpy(arrays.targets[spec.target][:, None])
        loss_fn = nn.SmoothL1Loss(beta=0.1 * spec.output_scale)
        manifest.update(output={"name": "output", "kind": "dense", "units": spec.units, "field": spec.target},
                        in_graph_normalisation=fit.to_dict())
        weights = None
    manifest["input"] = {"size": [cfg.size, cfg.size], "layout": "NCHW", "dtype": "float32",
                         "normalisation": norm.to_dict()}

    xt = torch.from_numpy(x)
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=epochs * steps_per_epoch)
    tr_t = torch.from_numpy(tr)
    history = []
    for epoch in range(epochs):
        model.train()
        if weights is not None:
            order = tr_t[torch.multinomial(weights, len(tr), replacement=True, generator=gen)]
        else:
            order = tr_t[torch.randperm(len(tr), generator=gen)]
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.task} epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=False)
        total = 0.0
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb, yb = xt[idx].clone(), yt[idx].clone()
            if cfg.augment:
                xb, yb = _augment(xb, yb, spec.flips, gen)
            if spec.crop and spec.crop < cfg.size:
                xb, yb = _random_crop(xb, yb, spec.crop, gen)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        val = _validate(model, cfg.task, x[va], arrays, va, spec, manifest) if len(va) else {}
        history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch, **val})
        if progress:
            print(f"{cfg.task} epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f} "
                  + " ".join(f"{k} {v:.4f}" for k, v in val.items() if isinstance(v, float)), flush=True)

    out.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": type(model).__name__, "kwargs": kwargs, "task": cfg.task}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, out / WEIGHTS)
    manifest["training"].update(history=history, seconds=round(time.perf_counter() - t_start, 1))
    manifest["validation"] = history[-1] if history else {}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))  # provisional; export finalises
    exported = export_model_dir(out, example=x[tr[:8]])
    return {"model": str(out), "validation": manifest["validation"], "parity": exported["parity"],
            "seconds": round(time.perf_counter() - t_start, 1)}


def _validate(model, task, xv, arrays, va, spec, manifest) -> dict:
    out = _predict_batches(model, xv)
    if task == "defect":
        classes = manifest["classes"]
        y = np.array([classes.index(arrays.labels[i]) for i in va])
        m = classification_metrics(y, out.argmax(1), classes)
        recalls = [v["recall"] for v in m["per_class"].values() if v["recall"] is not None]
        return {"val_accuracy": m["accuracy"], "val_min_recall": min(recalls)}
    truth = arrays.targets[spec.target][va]
    metrics = {"val_mae": float(np.abs(out[:, 0] - truth).mean())}
    if task == "phase":
        from edge.sim.optics import fringe_order
        wrapped = xv[:, 0]
        metrics["val_fringe_order_accuracy"] = float(
            (fringe_order(out[:, 0], wrapped) == fringe_order(truth, wrapped)).mean())
    return metrics


def export_model_dir(model_dir: Path, example: np.ndarray | None = None) -> dict:
    """(Re-)export a model folder's graphs from weights.pt, check parity with autograd, write the manifest."""
    model_dir = Path(model_dir)
    ckpt_path = model_dir / WEIGHTS
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no weights to export")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["meta"])
    model.load_state_dict(ckpt["state_dict"])
    model = fold_batchnorm(model)
    task = manifest["task"]
    c = len(manifest["channels"])
    size = manifest["input"]["size"][0]
    graph_norm = manifest.get("in_graph_normalisation")

    def sample_input(b: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(b, c, size, size, generator=gen)
        if graph_norm:  # physical units around the training distribution
            z = z * torch.tensor(graph_norm["std"]).view(1, -1, 1, 1) + torch.tensor(graph_norm["mean"]).view(1, -1, 1, 1)
        return z

    ex = torch.from_numpy(example) if example is not None else sample_input(2, torch.Generator().manual_seed(0))
    graphs = export_graphs(model, task, ex, model_dir)
    parity = check_parity(model, task, model_dir, graphs, sample_input)
    if "gradcam" in graphs:
        from edge.export.graphs import gradcam_alignment

        manifest["gradcam_alignment"] = gradcam_alignment(model, c, size)
    manifest.update(graphs=graphs, operators=sorted({o for g in graphs.values() for o in g["operators"]}),
                    parity={"relative_l2": {k: v["relative_l2"] for k, v in parity.items()},
                            "relative_max": {k: v["relative_max"] for k, v in parity.items()},
                            "kink_nudges": {k: v["kink_nudges"] for k, v in parity.items()},
                            "batches": [1, 8], "reference": "torch.autograd, float64"},
                    extra_files=[WEIGHTS])
    return write_manifest(model_dir, manifest)
