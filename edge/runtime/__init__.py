"""What runs on the edge device: a model folder loaded and verified, its graphs on one engine. No torch.

    from edge.runtime import Model
    model = Model.load("models/defect", backend="ort-cpu")
    model.classes, model.channels, model.sha256, model.audit_status
"""
from edge.runtime.engine import BACKENDS, InputError
from edge.runtime.manifest import ManifestError, audit_status, load_manifest, save_manifest
from edge.runtime.model import Model, softmax

__all__ = ["BACKENDS", "InputError", "ManifestError", "Model", "audit_status", "load_manifest", "save_manifest",
           "softmax"]
