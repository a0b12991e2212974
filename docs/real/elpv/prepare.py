"""Lay out the elpv solar-cell set (PyPI `elpv-dataset`) as an edge-xai data set folder, with the fixed
stratified 75/25 split committed beside this script (split.csv).

    python docs/real/elpv/prepare.py --out data/elpv          # -> data/elpv/{train,test}/<class>/cellNNNN.png

Classes by the defect probability the experts gave: ok (0), p33 (1/3), p67 (2/3), p100 (1). The split is
stratified by probability and by cell type (mono / poly), seed 0; it is written once (--write-split) and
read from split.csv afterwards, so every run and every machine uses the same test cells. Images are
linked, not copied (the package's files stay the only copy).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPLIT = HERE / "split.csv"
CLASSES = {0.0: "ok", 1 / 3: "p33", 2 / 3: "p67", 1.0: "p100"}


def labels() -> list[tuple[str, float, str]]:
    """(image path relative to the package's data folder, probability, type) per cell."""
    import elpv_dataset

    data = Path(elpv_dataset.__file__).parent / "data"
    rows = []
    for line in (data / "labels.csv").read_text().splitlines():
        path, prob, kind = line.split()
        rows.append((path, float(prob), kind))
    return rows


def class_of(p: float) -> str:
    return CLASSES[min(CLASSES, key=lambda v: abs(v - p))]


def make_split(rows, seed: int = 0, test_fraction: float = 0.25) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    out = {}
    strata: dict[tuple[str, str], list[str]] = {}
    for path, p, kind in rows:
        strata.setdefault((class_of(p), kind), []).append(path)
    for key in sorted(strata):
        paths = sorted(strata[key])
        order = rng.permutation(len(paths))
        k = int(round(len(paths) * test_fraction))
        for rank, i in enumerate(order):
            out[paths[i]] = "test" if rank < k else "train"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to create (train/ and test/ inside)")
    ap.add_argument("--write-split", action="store_true", help="(re)write split.csv (seed 0) instead of reading it")
    args = ap.parse_args(argv)
    import elpv_dataset

    data = Path(elpv_dataset.__file__).parent / "data"
    rows = labels()
    if args.write_split or not SPLIT.is_file():
        split = make_split(rows)
        with SPLIT.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "probability", "type", "class", "split"])
            for path, p, kind in rows:
                w.writerow([path, f"{p:.4f}", kind, class_of(p), split[path]])
    with SPLIT.open() as f:
        table = list(csv.DictReader(f))
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} exists and is not empty", file=sys.stderr)
        return 2
    for r in table:
        d = out / r["split"] / r["class"]
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(data / r["image"], d / Path(r["image"]).name)
    counts = {}
    for r in table:
        counts[(r["split"], r["class"])] = counts.get((r["split"], r["class"]), 0) + 1
    print(f"wrote {out}: " + ", ".join(f"{s}/{c} {n}" for (s, c), n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
