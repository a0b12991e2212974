"""Operators' verdicts back into training: the inspection store's frames as a data set.

    edge-xai dataset --from-store inspections.sqlite --out data/line-2026-11

Every inspection with a verdict and a stored frame becomes one sample in the data set format
(`OUT/<class>/<inspection id>.png|.npz`), labelled with the model's class where the operator agreed and
with the operator's class where they did not. The disagreements are also written as a separate review
set (`OUT-review/` by default) for a second look before they go into training. Each set's
`dataset.json` records where it came from and what was left out.

Frames are in the store only when the node runs with `store_frames = true` and the station asks for it
(`store_frame` in the request), and only the newest `frame_retention` of them: inspections whose frame
is not there are counted and reported, never guessed.

Files: a frame of one 8/16-bit `gray` channel (or c0..c2) is written as a PNG, as photographs are read;
any other frame as .npz with `channel_names` and each channel's array as sent (the loader scales 8/16-bit
arrays to [0, 1] as it does image files), plus `pixel_pitch_mm` when the frame gave it.
"""
from __future__ import annotations

import json
from pathlib import Path

from google.protobuf.message import DecodeError
from tqdm import tqdm

from edge.data.loader import SAFE_CLASS, write_sample
from edge.errors import InvalidInput, MissingFile
from edge.output_folder import staged_output
from edge.record import InspectionStore
from edge.serve.frames import MAX_PIXELS, decode_channel
from edge.v1 import inspection_pb2 as pb


def write_frame(frame: pb.Frame, stem: Path) -> Path:
    """One stored frame as a data set file at `stem` + .png or .npz; returns the path written."""
    names = [ch.name for ch in frame.channels]
    arrays = [decode_channel(ch, f"frame.channels[{i}]", MAX_PIXELS) for i, ch in enumerate(frame.channels)]
    return write_sample(stem, names, arrays, frame.pixel_pitch_mm if frame.pixel_pitch_mm > 0 else None)


def dataset_from_store(store_path: Path, out: Path, review: Path | None = None, progress: bool = True) -> dict:
    """Write the verdicted frames of an inspection store as a data set (and the disagreements as a review
    set); returns what was written and what was left out, as also kept in each set's dataset.json."""
    store_path, out = Path(store_path), Path(out)
    # resolved for the name: `--out .` names the current folder (Path(".") has an empty name)
    where = out.resolve()
    review = Path(review) if review is not None else where.with_name(where.name + "-review")
    if not store_path.is_file():
        raise MissingFile(f"--from-store {store_path}: no such inspection store")
    if where == review.resolve():
        raise InvalidInput("--out and --review must be different folders")
    # both sets appear when complete (a run stopped halfway leaves neither; each folder is refused when not
    # empty before anything is written); the review set only if there is one
    with staged_output(out, "--out") as work, staged_output(review, "--review", publish_empty=False) as work_review:
        summary, disagreements = _write_sets(store_path, work, work_review, progress)
    return {**summary, "out": str(out), "review": str(review) if disagreements else None}


def _write_sets(store_path: Path, out: Path, review: Path, progress: bool) -> tuple[dict, list[dict]]:
    store = InspectionStore(store_path)
    rows = store.verdicted()
    counts: dict[str, int] = {}
    left_out = {"no_frame": [], "unusable_class": [], "unreadable_frame": []}
    disagreements = []
    for r in tqdm(rows, desc="frames", unit="frame", disable=not progress):
        label = r["label"] if r["agree"] else r["correct_class"]
        if not label or not SAFE_CLASS.match(label):
            left_out["unusable_class"].append(r["inspection_id"])
            continue
        raw = store.frame(r["inspection_id"])
        if raw is None:
            left_out["no_frame"].append(r["inspection_id"])
            continue
        try:
            frame = pb.Frame.FromString(raw)
            path = write_frame(frame, out / label / r["inspection_id"])
        except (DecodeError, InvalidInput) as e:   # a stored frame that is not a readable edge.v1.Frame
            left_out["unreadable_frame"].append(f"{r['inspection_id']}: {e}")
            continue
        counts[label] = counts.get(label, 0) + 1
        if not r["agree"]:
            write_frame(frame, review / label / r["inspection_id"])
            disagreements.append({"inspection_id": r["inspection_id"], "file": f"{label}/{path.name}",
                                  "model": r["model"], "model_class": r["label"], "operator_class": label,
                                  "operator": r["operator"], "condition": r["condition"],
                                  "verdict_ms": r["created_ms"]})
    summary = {"source": str(store_path), "inspections_with_verdicts": len(rows), "written": sum(counts.values()),
               "classes": dict(sorted(counts.items())), "disagreements": len(disagreements),
               "left_out": {k: len(v) for k, v in left_out.items()}}
    if not rows:
        summary["note"] = (f"none of the store's {store.count()} inspections has an operator's verdict yet: "
                           "verdicts come from the HMI's Agree / Disagree or the SubmitVerdict call")
    if left_out["no_frame"]:
        summary["note"] = ("inspections without a stored frame were left out: frames are kept only when the node "
                           "runs with store_frames = true and the station sets store_frame, up to frame_retention")
    (out / "dataset.json").write_text(json.dumps({**summary, "left_out_ids": left_out}, indent=2) + "\n")
    if disagreements:
        (review / "dataset.json").write_text(json.dumps({"source": str(store_path), "kind": "operator disagreements",
                                                         "samples": disagreements}, indent=2) + "\n")
    return summary, disagreements
