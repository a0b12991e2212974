"""Why `edge-xai calibrate` fits large frames in tiles: a temperature fitted on the frames shrunk whole into
one input (what calibrate did before) against one fitted on the tiles the service reads, both judged on
other frames of the same set as served.

    python docs/real/large-frames-sim/calibration.py --model B/model --data set/test [--seed 0]

The labelled frames of --data are halved per class (seeded): the first half fits the two temperatures, the
second is judged, as tiles (the inputs the model reads) and as the served frames' confidences (the worst
tile deciding). Prints the table; --json writes it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from edge.data.arrays import load_arrays
from edge.data.loader import scan
from edge.data.tiles import load_as_served
from edge.evaluate import served_logits
from edge.runtime.calibration import expected_calibration_error, fit_calibration, softmax_t
from edge.runtime.model import Model


def halve(src: Path, dst: Path, seed: int) -> None:
    """dst/fit and dst/judge: each class's frames split in two (symbolic links, annotations alongside)."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list] = {}
    for item in scan(src):
        by_class.setdefault(item.label, []).append(item)
    for cls, items in sorted(by_class.items()):
        order = rng.permutation(len(items))
        for half, idx in (("fit", order[: len(items) // 2]), ("judge", order[len(items) // 2:])):
            (dst / half / cls).mkdir(parents=True, exist_ok=True)
            for i in idx:
                for f in (items[i].path, items[i].mask_path, items[i].voc_path):
                    if f is not None:
                        os.symlink(f.resolve(), dst / half / cls / f.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path, help="labelled frames larger than the model's training images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model = Model.load(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="edge-xai-calibration-"))
    try:
        halve(args.data, tmp, args.seed)

        def labelled(a):
            return np.array([model.classes.index(c) for c in a.labels])

        frames_fit = load_arrays(tmp / "fit", model.input_shape[1], model.channels, (), progress=False)
        tiles_fit, _ = load_as_served(tmp / "fit", model.input_spec, model.ok_class, model.channels, progress=False)
        fitted = {"letterboxed frames": fit_calibration(model.predict(frames_fit.x), labelled(frames_fit), "frames"),
                  "tiles": fit_calibration(model.predict(tiles_fit.x), labelled(tiles_fit), "tiles")}
        judge_frames = load_arrays(tmp / "judge", model.input_shape[1], model.channels, (), progress=False)
        judge_tiles, _ = load_as_served(tmp / "judge", model.input_spec, model.ok_class, model.channels,
                                        progress=False)
        tile_logits, tile_y = model.predict(judge_tiles.x), labelled(judge_tiles)
        frame_logits, _ = served_logits(model, tmp / "judge", judge_frames)
        frame_y = labelled(judge_frames)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = {"raw softmax": 1.0, **{k: float(e.get("temperature", 1.0)) for k, e in fitted.items()}}
    result = {"model": str(args.model), "data": str(args.data), "seed": args.seed,
              "fit": {"frames": len(frames_fit.x), "tiles": len(tiles_fit.x)},
              "judged": {"frames": len(frame_y), "tiles": len(tile_y)},
              "ece": {k: {"temperature": t,
                          "tiles": expected_calibration_error(softmax_t(tile_logits, t), tile_y),
                          "served_frames": expected_calibration_error(softmax_t(frame_logits, t), frame_y)}
                      for k, t in rows.items()}}
    print(f"fitted on {len(frames_fit.x)} frames (letterboxed) or their {len(tiles_fit.x)} tiles; judged on "
          f"{len(frame_y)} other frames ({len(tile_y)} tiles)")
    print(f"{'temperature fitted on':<22}{'T':>8}{'ECE tiles':>11}{'ECE frames':>12}")
    for k, r in result["ece"].items():
        print(f"{k:<22}{r['temperature']:>8.3f}{r['tiles']:>11.4f}{r['served_frames']:>12.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
