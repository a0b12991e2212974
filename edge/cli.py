"""The `edge-xai` command line: one sub-command per stage of the pipeline.

    edge-xai simulate --out data/train --n 6000 --seed 1
    edge-xai train --task defect --data data/train --out models/defect
    edge-xai evaluate --model models/defect --data data/test --json

Sub-commands import their stage lazily, so `edge-xai --help` stays fast and the runtime commands never
import torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UserError(Exception):
    """A problem with what the user asked for or supplied; printed without a traceback."""


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge.sim.sample import SimConfig, write_dataset

    if args.n < 1:
        raise UserError("--n must be at least 1")
    cfg = SimConfig(size=args.size, artifact=args.artifact, artifact_rate=args.artifact_rate)
    out = write_dataset(Path(args.out), args.n, args.seed, cfg, progress=not args.quiet)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from edge.train.train import TrainConfig, train

    cfg = TrainConfig(task=args.task, epochs=args.epochs, size=args.size, seed=args.seed,
                      channels=args.channels, batch_size=args.batch_size, lr=args.lr,
                      normalisation=args.norm, balance=not args.no_balance, augment=not args.no_augment,
                      ok_class=args.ok_class, threads=args.threads, limit=args.limit)
    result = train(Path(args.data), Path(args.out), cfg, progress=not args.quiet)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edge.train.train import export_model_dir

    manifest = export_model_dir(Path(args.model))
    print(f"exported {', '.join(manifest['graphs'])} to {args.model}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.evaluate import evaluate, format_report

    metrics = evaluate(Path(args.model), Path(args.data), progress=not (args.quiet or args.json),
                       limit=args.limit, batch_size=args.batch_size)
    print(json.dumps(metrics) if args.json else format_report(metrics))
    if args.update_manifest:
        from edge.runtime.manifest import record_evaluation
        record_evaluation(Path(args.model), metrics, data_recipe=Path(args.data) / "dataset.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-xai",
        description="Explainable defect inspection at the edge: simulate data, train and export models "
                    "with gradient-carrying ONNX explain graphs, evaluate them.")
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
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    t = sub.add_parser("train", help="train a model on the CPU and export its ONNX explain graphs",
                       description="Train one of the three models, fold batch-norm, export predict / "
                                   "gradcam / input-gradient ONNX graphs checked against autograd, and "
                                   "write the manifest. Deterministic given --seed.")
    t.add_argument("--task", required=True, choices=["defect", "thermal", "phase"])
    t.add_argument("--data", required=True, help="dataset folder DIR/<class>/<stem>.<ext>")
    t.add_argument("--out", required=True, help="model folder to write")
    t.add_argument("--epochs", type=int, default=None, help="default: 16 (defect), 56 (thermal), 15 (phase)")
    t.add_argument("--channels", default=None,
                   help="input channels: a count (first C) or comma-separated names; default: all "
                        "(defect), thermal,height,pixel_pitch_mm (thermal), phase (phase)")
    t.add_argument("--size", type=int, default=128, help="input side in pixels (default 128)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    t.add_argument("--norm", default="auto", choices=["auto", "per_image", "centred", "dataset"],
                   help="input normalisation of the classifier: per_image standardisation (robust to "
                        "brightness varying from part to part), centred (per-image mean removed, "
                        "dataset scale: keeps physical contrasts in K) or dataset statistics; auto "
                        "picks centred for simulator .npz data and per_image for image files")
    t.add_argument("--no-balance", action="store_true", help="do not sample classes evenly")
    t.add_argument("--no-augment", action="store_true", help="no flips")
    t.add_argument("--ok-class", default="ok", help="the folder name meaning 'no defect' (default ok)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    t.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    x = sub.add_parser("export", help="re-export a model folder's ONNX graphs from its weights.pt")
    x.add_argument("--model", required=True)
    x.set_defaults(func=_cmd_export)

    e = sub.add_parser("evaluate", help="evaluate a model folder on a dataset with ONNX Runtime",
                       description="Runs the shipped predict graph (no PyTorch) and reports accuracy "
                                   "and per-class precision/recall (defect), MAE against the apparent-"
                                   "temperature baseline (thermal) or fringe-order accuracy (phase).")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--update-manifest", action="store_true",
                   help="record these metrics (and the data recipe) in the model's manifest")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, FileNotFoundError, FileExistsError, ValueError) as exc:
        # Problems with inputs are reported as one clear line; bugs keep their traceback.
        print(f"edge-xai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
