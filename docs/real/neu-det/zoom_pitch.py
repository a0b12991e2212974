"""NEU-DET test images as a camera of another resolution takes them, read with and without the frame's pitch.

    python docs/real/neu-det/zoom_pitch.py docs/real/neu-det/model .../neu-det/test --out docs/real/neu-det/zoom-pitch.json

Each test image is resized by ZOOM (2: twice the resolution over the same field, so half the pitch) and
served as a frame: without its pitch the served path takes it to have the training images' pitch (a
frame over 1.5x their size is then cut into tiles of the training images' pixel size, each seeing part of
a magnified defect); with it (`frame_view(..., pixel_pitch_mm)`) it is read at the training pitch. The
committed model was trained without a pitch, so a copy of it records a nominal 0.1 mm (as
`edge-xai train --pixel-pitch-mm 0.1` would): only the ratio of the two pitches matters.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge.explain import explain_frames
from edge.explain.frame import frame_view
from edge.explain.gradcam import GradCAMExplainer
from edge.runtime.manifest import load_manifest, write_manifest
from edge.runtime.model import Model

PITCH = 0.1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="NEU-DET model folder")
    ap.add_argument("test", help="NEU-DET test folder (class folders of .jpg)")
    ap.add_argument("--every", type=int, default=3, help="every n-th test image (default 3: 178 of 534)")
    ap.add_argument("--zooms", default="0.5,1,2,3")
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    args = ap.parse_args(argv)
    files = sorted(Path(args.test).glob("*/*.jpg"))[::args.every]
    if not files:
        sys.exit(f"{args.test}: no class folders of .jpg images")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(args.model, copy)
        write_manifest(copy, {**load_manifest(copy), "pixel_pitch_mm": PITCH, "pixel_pitch_range_mm": [PITCH, PITCH]})
        model = Model.load(copy, threads=1)
        explainer = GradCAMExplainer(model)
        rows = []
        for zoom in (float(z) for z in args.zooms.split(",")):
            for pitched in (False, True):
                right = tiles = 0
                t0 = time.perf_counter()
                for f in files:
                    im = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
                    if zoom != 1:
                        im = cv2.resize(im, None, fx=zoom, fy=zoom,
                                        interpolation=cv2.INTER_LINEAR if zoom > 1 else cv2.INTER_AREA)
                    view = frame_view(im[None], model, PITCH / zoom if pitched else None)
                    [r] = explain_frames(explainer, [view])
                    right += r.explanation.prediction.label == f.parent.name
                    tiles += r.tiles
                row = {"zoom": zoom, "pitch_sent": pitched, "images": len(files), "accuracy": right / len(files),
                       "tiles_per_frame": tiles / len(files),
                       "ms_per_frame": 1e3 * (time.perf_counter() - t0) / len(files)}
                rows.append(row)
                print(f"zoom {zoom:g}, {'with its pitch   ' if pitched else 'without its pitch'}: accuracy "
                      f"{row['accuracy']:.3f} ({right} of {len(files)}), {row['tiles_per_frame']:.1f} tiles a frame",
                      flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": str(args.model), "nominal_training_pitch_mm": PITCH,
                                              "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
