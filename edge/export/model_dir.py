"""Export of a model folder: its graphs from a trained PyTorch module, parity with autograd, the manifest.

    export_model_dir(Path("models/defect"), load_weights("models/defect"))    # what `edge-xai export` does

The module comes from the caller (training, or `edge.train.models.load_weights`), so export knows
graphs and manifests, not architectures.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edge.errors import InvalidInput
from edge.export.graphs import OPTIONAL_GRAPHS, check_parity, export_graphs, gradcam_alignment, graph_specs
from edge.runtime.manifest import MANIFEST, write_manifest

WEIGHTS = "weights.pt"     # kept beside the graphs and hashed with them (reference tests, re-export)


def export_model_dir(model_dir: Path, model: nn.Module, example: np.ndarray | None = None,
                     only: list[str] | None = None) -> dict:
    """(Re-)export a model folder's graphs from `model` (batch norm folded), check parity with autograd,
    write the manifest. The folder's manifest.json (final or provisional) supplies the task, channels and
    input size. only: re-export just these graphs of an exported folder and keep the others' files (the
    predict graph's sha256 is the identity audits and inspections are tied to: leaving it alone keeps a
    passed audit valid)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / MANIFEST).read_text())
    task = manifest["task"]
    if only is not None:
        known = set(graph_specs(task))
        unknown = sorted(set(only) - known)
        if unknown or not only:
            raise InvalidInput(f"graphs {', '.join(unknown) or '(none)'}: a {task} model has {', '.join(sorted(known))}")
        missing = sorted(known - set(only) - set(manifest.get("graphs", {})) - set(OPTIONAL_GRAPHS))
        if missing:
            raise InvalidInput(f"{model_dir}: graphs {', '.join(missing)} were never exported; export them all "
                               "(leave out --graphs)")
    c = len(manifest["channels"])
    size = manifest["input"]["size"][0]
    graph_norm = manifest.get("in_graph_normalisation")

    def sample_input(b: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(b, c, size, size, generator=gen)
        if graph_norm:  # physical units around the training distribution
            z = z * torch.tensor(graph_norm["std"]).view(1, -1, 1, 1) + torch.tensor(graph_norm["mean"]).view(1, -1, 1, 1)
        return z

    ex = torch.from_numpy(example) if example is not None else sample_input(2, torch.Generator().manual_seed(0))
    fresh = export_graphs(model, task, ex, model_dir, only)
    parity = check_parity(model, task, model_dir, fresh, sample_input)
    if "gradcam" in fresh:
        manifest["gradcam_alignment"] = gradcam_alignment(model, c, size)
    graphs = {**manifest["graphs"], **fresh} if only is not None else fresh
    graphs = {name: graphs[name] for name in graph_specs(task) if name in graphs}     # the usual order
    old = manifest.get("parity", {}) if only is not None else {}
    keys = ("relative_l2", "relative_max", "kink_nudges", "kink_samples")
    manifest.update(graphs=graphs, operators=sorted({o for g in graphs.values() for o in g["operators"]}),
                    parity={**{k: {**old.get(k, {}), **{g: v[k] for g, v in parity.items()}} for k in keys},
                            "batches": [1, 8], "reference": "torch.autograd, float64"},
                    # files training added beside the weights (review.npz) stay hashed after a re-export
                    extra_files=sorted(set(manifest.get("extra_files", [])) | {WEIGHTS}))
    return write_manifest(model_dir, manifest)
