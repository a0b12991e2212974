"""Model manifests: what a model folder holds and the proof that its files are the ones described.

A model folder holds `manifest.json`, the ONNX graphs it names, and `weights.pt` (PyTorch weights, for
reference tests and benchmarks only). Loading checks every file's sha256 so a model that was edited,
truncated or mixed with another model's files is refused before it answers a single frame.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge.errors import InvalidInput
from edge.output_folder import write_text_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("task", "channels", "input", "graphs", "files", "opset")


class ManifestError(InvalidInput):
    """A model folder that does not match its manifest; the message names the file."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_manifest(model_dir: Path, manifest: dict) -> dict:
    """Write manifest.json as given (the one place that writes it); atomic, so a crash mid-write leaves
    the old manifest, never half a file."""
    write_text_atomic(Path(model_dir) / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_manifest(model_dir: Path, manifest: dict) -> dict:
    """Hash every file the manifest names (graphs + weights) and write manifest.json."""
    model_dir = Path(model_dir)
    names = sorted({g["file"] for g in manifest["graphs"].values()} | set(manifest.get("extra_files", [])))
    return save_manifest(model_dir, dict(manifest, format_version=FORMAT_VERSION,
                                         files={n: sha256_file(model_dir / n) for n in names}))


def predict_sha256(manifest: dict) -> str:
    """The sha256 of the model's predict graph: the identity audits and inspections are tied to."""
    return manifest["files"][manifest["graphs"]["predict"]["file"]]


def load_manifest(model_dir: Path, verify: bool = True) -> dict:
    """Read and (by default) verify a model folder's manifest."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; is {model_dir} a model folder?")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ManifestError(f"{path}: missing keys {missing}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    if verify:
        for name, digest in manifest["files"].items():
            f = model_dir / name
            if not f.is_file():
                raise ManifestError(f"{f}: listed in the manifest but missing")
            actual = sha256_file(f)
            if actual != digest:
                raise ManifestError(f"{f}: sha256 {actual[:12]}… does not match the manifest's {digest[:12]}…; "
                                    "the file was changed after export (re-run `edge-xai export`)")
        for g, spec in manifest["graphs"].items():
            if spec["file"] not in manifest["files"]:
                raise ManifestError(f"{path}: graph {g!r} file {spec['file']} has no sha256 entry")
    return manifest


def record_evaluation(model_dir: Path, metrics: dict, data_recipe: Path | None = None) -> dict:
    """Store held-out evaluation metrics (and the recipe of the data they came from) in the manifest."""
    manifest = load_manifest(model_dir)
    entry = {"metrics": metrics}
    if data_recipe is not None and Path(data_recipe).is_file():
        entry["data"] = json.loads(Path(data_recipe).read_text())
    manifest["evaluation"] = entry
    return save_manifest(model_dir, manifest)


def record_audit_status(model_dir: Path, audit: dict) -> dict:
    """Store a gate's outcome (see `edge.audit.gate.record_audit`) in the manifest; it must name the
    predict graph's sha256 it judged, so editing the model afterwards voids it."""
    manifest = load_manifest(model_dir)
    if audit.get("sha256") != predict_sha256(manifest):
        raise InvalidInput(f"{audit.get('metrics', 'the audit')} audited another model (sha256 "
                           f"{str(audit.get('sha256', '?'))[:12]}) than {model_dir} ({predict_sha256(manifest)[:12]})")
    manifest["audit"] = audit
    return save_manifest(model_dir, manifest)


def audit_status(manifest: dict) -> str:
    """passed | failed (...) | not audited; an audit of other files than these counts as none."""
    audit = manifest.get("audit")
    if not audit or audit.get("sha256") != predict_sha256(manifest):
        return "not audited"
    if audit["status"] == "passed":
        return "passed"
    return f"failed ({', '.join(audit['failed_checks'])})"
