"""Evaluation of a shipped model on a dataset folder, through the ONNX predict graph (no torch).

    edge-xai evaluate --model models/defect --data data/test --json
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from edge.data.arrays import load_arrays
from edge.data.loader import sample_names
from edge.errors import InvalidInput
from edge.runtime.model import Model


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: true class)."""
    k = len(classes)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = confusion[i, i]
        predicted, actual = confusion[:, i].sum(), confusion[i].sum()
        per_class[c] = {"precision": float(tp / predicted) if predicted else 0.0,
                        "recall": float(tp / actual) if actual else None, "support": int(actual)}
    return {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)), "per_class": per_class,
            "confusion": {"classes": classes, "matrix": confusion.tolist()}}


def prediction_rows(files: list[str], labels: list[str], classes: list[str], probabilities: np.ndarray,
                    tiled: Collection[int] = ()) -> list[dict]:
    """One row per sample for an engineer to review: its file, true and predicted class, the confidence
    the node would report (the calibrated probability of the predicted class) and that of the true class,
    and how the served path read the frame (`whole`, or `tiles` for the indices in `tiled`: the worst tile
    decided). Rows in the data set's order; the misclassified are the rows with `correct` 0."""
    pred = probabilities.argmax(1)
    index = {c: i for i, c in enumerate(classes)}
    tiled = set(tiled)
    return [{"file": f, "true": lab, "predicted": classes[k], "correct": int(classes[k] == lab),
             "confidence": round(float(p[k]), 4), "p_true": round(float(p[index[lab]]), 4),
             "read": "tiles" if n in tiled else "whole",
             **{f"p_{c}": round(float(p[i]), 4) for i, c in enumerate(classes)}}
            for n, (f, lab, k, p) in enumerate(zip(files, labels, pred, probabilities))]


def write_rows_csv(path: Path, rows: list[dict]) -> Path:
    """rows as a CSV file (a header from the first row's keys), written whole or not at all."""
    import csv
    import io

    from edge.output_folder import write_text_atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["file"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(Path(path), buf.getvalue())


def evaluate(model_dir: Path, data: Path, progress: bool = True, limit: int | None = None,
             batch_size: int = 64, pixel_pitch_mm: float | None = None, predictions: Path | None = None) -> dict:
    """pixel_pitch_mm: the data set's pitch (every image of it; a classifier's frames are then read at the
    training pitch as the service reads frames sent with it, `edge.explain.frame.served_input`). None: the
    data set is taken to have the training images' pitch. predictions: a CSV file to write one row per
    sample to (a classifier: `prediction_rows`; a regression model: its error per sample)."""
    model = Model.load(model_dir)
    if pixel_pitch_mm:
        from edge.explain.frame import require_training_pitch

        require_training_pitch(model)
    m = model.manifest
    task = m["task"]
    size = m["input"]["size"][0]
    target = m.get("output", {}).get("field")
    arrays = load_arrays(data, size, m["channels"], (target,) if target else (), limit=limit, progress=progress)
    result: dict = {"task": task, "model": m.get("name"), "samples": len(arrays.labels), "data": str(data)}
    if task == "defect":
        classes = model.classes
        y = model.class_indices(arrays.labels, data)
        out, tiled = served_logits(model, data, arrays, progress, batch_size, pixel_pitch_mm)
        if tiled:
            result["tiled_frames"] = len(tiled)
        if pixel_pitch_mm:
            result["pixel_pitch_mm"] = pixel_pitch_mm
        result.update(classification_metrics(y, out.argmax(1), classes))
        from edge.runtime.calibration import calibration_report

        cal = calibration_report(out, y, model.temperature)
        result["calibration"] = {k: v for k, v in cal.items() if not k.startswith("reliability")}
        if predictions is not None:
            rows = prediction_rows(sample_names(arrays.paths, data), list(arrays.labels), classes,
                                   model.probabilities(out), tiled)
            result["predictions"] = str(write_rows_csv(predictions, rows))
        return result
    truth = arrays.targets[target]
    pred = model.predict(arrays.x, batch_size=batch_size)[:, 0]
    geometries = [str(meta.get("geometry", "unknown")) for meta in arrays.meta]
    if task == "thermal":
        apparent = arrays.x[:, m["channels"].index("thermal")]
        err, base = np.abs(pred - truth), np.abs(apparent - truth)
        result.update(mae=float(err.mean()), baseline_mae=float(base.mean()),
                      improvement=float(base.mean() / max(err.mean(), 1e-12)),
                      p99_abs_error=float(np.percentile(err, 99)))
        per = defaultdict(list)
        for g, e, b in zip(geometries, err.mean(axis=(1, 2)), base.mean(axis=(1, 2))):
            per[g].append((e, b))
        result["per_geometry"] = {g: {"mae": float(np.mean([e for e, _ in v])),
                                      "baseline_mae": float(np.mean([b for _, b in v])), "n": len(v)}
                                  for g, v in sorted(per.items())}
        if predictions is not None:
            rows = [{"file": f, "geometry": g, "mae": round(float(e), 6), "baseline_mae": round(float(b), 6)}
                    for f, g, e, b in zip(sample_names(arrays.paths, data), geometries, err.mean(axis=(1, 2)),
                                          base.mean(axis=(1, 2)))]
            result["predictions"] = str(write_rows_csv(predictions, rows))
        return result
    from edge.sim.optics import fringe_order

    wrapped = arrays.x[:, m["channels"].index("phase")]
    correct = fringe_order(pred, wrapped) == fringe_order(truth, wrapped)
    nonzero = fringe_order(truth, wrapped) != 0
    result.update(fringe_order_accuracy=float(correct.mean()),
                  fringe_order_accuracy_wrapped_pixels=float(correct[nonzero].mean()) if nonzero.any() else None,
                  baseline_fringe_order_accuracy=float((~nonzero).mean()),
                  mae=float(np.abs(pred - truth).mean()),
                  images_all_correct=float(correct.all(axis=(1, 2)).mean()))
    per = defaultdict(list)
    for g, c in zip(geometries, correct.mean(axis=(1, 2))):
        per[g].append(c)
    result["per_geometry"] = {g: {"fringe_order_accuracy": float(np.mean(v)), "n": len(v)} for g, v in sorted(per.items())}
    if predictions is not None:
        rows = [{"file": f, "geometry": g, "fringe_order_accuracy": round(float(c), 6),
                 "mae": round(float(e), 6)}
                for f, g, c, e in zip(sample_names(arrays.paths, data), geometries, correct.mean(axis=(1, 2)),
                                      np.abs(pred - truth).mean(axis=(1, 2)))]
        result["predictions"] = str(write_rows_csv(predictions, rows))
    return result


def served_in_tiles(shapes: list[tuple[int, int]], specs: list[dict]) -> list[int]:
    """Indices of the frames the served path inspects in tiles: much larger than the training images.
    specs: the model's `input` as each frame is served (`served_inputs`)."""
    from edge.data.geometry import should_tile

    return [i for i, ((h, w), spec) in enumerate(zip(shapes, specs)) if should_tile(h, w, spec)]


def served_split(shapes: list[tuple[int, int]], specs: list[dict]) -> tuple[np.ndarray, list[int]]:
    """(whole, tiled): indices of the frames the served path reads whole (letterboxed), and of those it
    inspects in tiles, whose letterboxed input it never reads."""
    tiled = served_in_tiles(shapes, specs)
    return np.setdiff1d(np.arange(len(shapes)), tiled), tiled


def frame_pitch(meta: dict, pixel_pitch_mm: float | None = None) -> float | None:
    """A frame's pitch as the station sends it (`edge.serve.station`): its file's own where it records one
    (an .npz's `pixel_pitch_mm`, the loader's meta), else the data set's `pixel_pitch_mm` (None: taken to
    have the training images' pitch)."""
    return meta.get("pixel_pitch_mm") or pixel_pitch_mm


def served_at(model: Model, pixel_pitch_mm: float | None = None) -> Callable[[dict], dict]:
    """A frame's meta -> the model's `input` as that frame is served at its pitch (`frame_pitch`,
    `edge.explain.frame.served_input`), one spec per pitch; what `edge.data.tiles.load_as_served` cuts
    each frame by."""
    from edge.explain.frame import served_input

    specs: dict[float | None, dict] = {}

    def spec(meta: dict) -> dict:
        pitch = frame_pitch(meta, pixel_pitch_mm)
        if pitch not in specs:
            specs[pitch] = served_input(model, pitch)
        return specs[pitch]
    return spec


def served_inputs(model: Model, meta: list[dict], pixel_pitch_mm: float | None = None) -> list[dict]:
    """The model's `input` as each of these frames (their loader meta) is served (`served_at`)."""
    return list(map(served_at(model, pixel_pitch_mm), meta))


def served_logits(model: Model, data: Path, arrays, progress: bool = False, batch_size: int = 64,
                  pixel_pitch_mm: float | None = None) -> tuple[np.ndarray, list[int]]:
    """The logits (N, K) the served path decides the frames of `arrays` (loaded from `data`) by, and the
    indices of those it inspects in tiles: a frame read whole by its letterboxed input in `arrays.x`, a frame
    much larger than the training images by its deciding tile (read again at its own size; its letterboxed
    input is not run, the served path never reads it). pixel_pitch_mm: the data set's pitch, sent with the
    frames that record none (`frame_pitch`)."""
    whole, tiled = served_split(arrays.source_shapes, served_inputs(model, arrays.meta, pixel_pitch_mm))
    out = np.empty((len(arrays.x), len(model.classes)), np.float32)
    if len(whole):
        x = arrays.x if len(whole) == len(arrays.x) else arrays.x[whole]
        out[whole] = model.predict(x, batch_size=batch_size)
    if tiled:
        out[tiled] = _decide_tiled(model, data, [arrays.paths[i] for i in tiled], progress, pixel_pitch_mm)
    return out, tiled


def served_views(model: Model, data: Path, paths: list[Path], progress: bool = False, desc: str = "tiled frames",
                 pixel_pitch_mm: float | None = None):
    """Frames of data set `data` read again at their own size, as the served path gets them (each sent with
    its own pitch where its file records one, else `pixel_pitch_mm`): one `FrameView` (its inputs, tiled
    where the frame is much larger than the training images) per path, in order."""
    from tqdm import tqdm

    from edge.data import loader
    from edge.data.arrays import frame_planes
    from edge.explain import frame_view

    items = {item.path: item for item in loader.scan(Path(data))}
    for p in tqdm(paths, desc=desc, unit="frame", disable=not progress):
        sample = loader.load_sample(items[p])
        yield frame_view(frame_planes(sample, model.channels), model, frame_pitch(sample.meta, pixel_pitch_mm))


def _decide_tiled(model: Model, data: Path, paths: list[Path], progress: bool = False,
                  pixel_pitch_mm: float | None = None) -> np.ndarray:
    """The deciding logits of these frames as the served path decides them: read again at their own size,
    cut into tiles at the training scale, the worst tile decides (`edge.explain.decide_frames`)."""
    from edge.explain import decide_frames

    return np.concatenate([decide_frames(model, [view])
                           for view in served_views(model, data, paths, progress, pixel_pitch_mm=pixel_pitch_mm)])


def format_report(metrics: dict) -> str:
    lines = [f"{metrics['task']} model {metrics.get('model')} on {metrics['samples']} samples of {metrics['data']}"]
    if metrics["task"] == "defect":
        if metrics.get("pixel_pitch_mm"):
            from edge.explain.frame import read_at_pitch_note

            lines.append(read_at_pitch_note(metrics["pixel_pitch_mm"]))
        if metrics.get("tiled_frames"):
            lines.append(f"{metrics['tiled_frames']} frames much larger than the training images were inspected in "
                         "tiles, as the served path does (the worst tile decides)")
        lines.append(f"accuracy {metrics['accuracy']:.4f}")
        lines.append(f"{'class':<16}{'precision':>10}{'recall':>10}{'support':>9}")
        for c, v in metrics["per_class"].items():
            rec = "-" if v["recall"] is None else f"{v['recall']:.4f}"
            lines.append(f"{c:<16}{v['precision']:>10.4f}{rec:>10}{v['support']:>9}")
        cm = metrics["confusion"]
        lines.append("confusion (rows true, columns predicted): " + " ".join(c[:5] for c in cm["classes"]))
        lines += ["  " + " ".join(f"{n:5d}" for n in row) for row in cm["matrix"]]
        cal = metrics.get("calibration")
        if cal:
            lines.append(f"calibration: temperature {cal['temperature']:.3f}; expected calibration error "
                         f"{cal['ece_before']:.4f} raw -> {cal['ece_after']:.4f} calibrated "
                         f"(NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}, {cal['bins']} bins)")
            floor = cal.get("ece_floor")
            if floor:
                lines.append(f"  a perfectly calibrated model with these confidences would read ECE {floor['mean']:.4f} "
                             f"on {cal['n']} samples ({floor['p95']:.4f} at the 95th percentile): what sampling noise alone "
                             "reads at this sample count")
        if metrics.get("predictions"):
            wrong = metrics["samples"] - int(np.trace(np.array(cm["matrix"])))
            lines.append(f"one row per sample in {metrics['predictions']} ({wrong} misclassified: correct=0)")
        return "\n".join(lines)
    for k, v in metrics.items():
        if isinstance(v, float):
            lines.append(f"{k:<38}{v:.4f}")
    for g, v in metrics.get("per_geometry", {}).items():
        lines.append(f"  {g:<12} " + " ".join(f"{k} {x:.4f}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items()))
    if metrics.get("predictions"):
        lines.append(f"one row per sample in {metrics['predictions']}")
    return "\n".join(lines)


def calibrate(model_dir: Path, data: Path, progress: bool = True, limit: int | None = None,
              batch_size: int = 64, review_budget: float = 0.10, seed: int = 0,
              choose_cam: Callable | None = None, pixel_pitch_mm: float | None = None) -> dict:
    """Fit the classifier's confidence calibration and its review flag on held-out labelled data (not the data
    it will be evaluated on) and record them in the model folder; decisions, graphs and the audit's sha256
    are unchanged. The review flag's embedding model is fitted on one half of the data (seeded), its
    thresholds on the other, after the temperature is in place. Frames much larger than the training
    images are fitted as the served path reads them: cut into tiles of the training images' size
    (`edge.data.tiles.load_as_served`; the entry's `tiles` says how many frames became how many inputs;
    `limit` then counts inputs). pixel_pitch_mm: the data's pitch, for frames from the line's camera where
    it differs from the training images' (read as the service reads frames sent with it; the entry records it).

    choose_cam: `edge.audit.localisation.choose_cam` (passed in: the audit builds on this module, not the
    other way round) to first choose the Grad-CAM-family map by training's rule on this data's masks or
    boxes (the entry's `cam` says what was chosen and why), so that a model trained before a method
    existed can take it up; the review flag is then fitted on the chosen maps."""
    from edge.runtime.calibration import fit_calibration
    from edge.runtime.manifest import save_manifest

    model = Model.load(model_dir)
    if not model.classes:
        raise InvalidInput(f"{model_dir}: a {model.task} model has no class confidences to calibrate")
    from edge.explain.frame import require_training_pitch, served_input

    if pixel_pitch_mm:
        require_training_pitch(model)
    spec = served_input(model, pixel_pitch_mm)
    arrays = load_arrays(data, model.input_shape[1], model.channels, (), limit=limit, progress=progress)
    model.class_indices(arrays.labels, data)       # fail on an unknown class before the tiles are cut
    tiles = None
    tiled = served_in_tiles(arrays.source_shapes, served_inputs(model, arrays.meta, pixel_pitch_mm))
    if tiled:
        # a temperature or a threshold read from frames shrunk whole into one input would be fitted on inputs
        # the service never gives the model
        from edge.data.tiles import left_out_text, load_as_served

        arrays, cut = load_as_served(data, spec, model.ok_class, model.channels, limit=limit,
                                     progress=progress, served_at=served_at(model, pixel_pitch_mm))
        tiles = {"frames": cut["frames"], "tile_px": cut["tile"], "inputs": len(arrays.x),
                 "left_out": left_out_text(cut)}
        if not len(arrays.x):
            raise InvalidInput(f"{data}: no input left after cutting its large frames into tiles ({tiles['left_out']})")
    y = model.class_indices(arrays.labels, data)
    cam = _choose_cam(choose_cam, model_dir, model, arrays, data, batch_size) if choose_cam else None
    entry = fit_calibration(model.predict(arrays.x, batch_size=batch_size), y, str(data))
    if "fitted_temperature" not in entry and entry["method"] == "none":       # too few samples to fit
        raise InvalidInput(f"{data}: {entry['reason']}")
    if tiles:
        entry["tiles"] = tiles
    if pixel_pitch_mm:
        entry["pixel_pitch_mm"] = pixel_pitch_mm
    manifest = dict(model.manifest, calibration=entry)
    if cam:
        entry["cam"] = cam
        manifest["explain"] = {"cam_method": cam["cam_method"], "reason": cam["reason"]}
    save_manifest(model_dir, manifest)
    from edge.explain import review

    model = Model.load(model_dir)                  # with its temperature: the flag sees calibrated answers
    order = np.random.default_rng(seed).permutation(len(y))
    half, rest = order[: len(y) // 2], order[len(y) // 2:]
    policy, scores = review.fit_for_model(model, arrays.x[half], y[half], arrays.x[rest], review_budget)
    entry["review"] = review.save(model_dir, policy, scores, f"{data} (embeddings: {len(half)} samples, "
                                                            f"thresholds: {len(rest)})")
    return entry


def _choose_cam(choose_cam: Callable, model_dir: Path, model: Model, arrays, data: Path, batch_size: int) -> dict:
    """calibrate's --choose-cam: the map training's rule picks on this held-out data, with what it replaces."""
    method, why, n = choose_cam(model, arrays.x, arrays.masks, arrays.has_mask, arrays.labels, model.ok_class, data,
                                batch_size)
    if not n:
        raise InvalidInput(f"{data}: --choose-cam needs defect samples with masks or boxes; none of its "
                           f"{len(arrays.x)} samples has one ({model_dir} keeps {model.cam_method})")
    return {"cam_method": method, "previous": model.cam_method, "samples": n,
            "reason": f"chosen on held-out data, {n} annotated defect samples: {why}"}
