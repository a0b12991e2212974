"""Where an elpv model's test errors lie: per cell type (mono- or polycrystalline, which the elpv package
records and the model is never told) and per kind of mistake, with a contact sheet of the missed cells.

    edge-xai evaluate --model M --data D/test --predictions rows.csv
    python docs/real/elpv/errors_by_type.py rows.csv D/test [sheet.png]

rows.csv: `edge-xai evaluate --predictions`; D/test: the folder `prepare.py` wrote (its files are named
as the package's). sheet.png: the first 16 fully defective cells called defect-free, each labelled with
its type and the probability the model gave the true class.
"""
from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def cell_types() -> dict[str, str]:
    """cellNNNN.png -> "mono" or "poly", from the package's labels.csv."""
    import elpv_dataset

    labels = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    out = {}
    for line in labels.read_text().splitlines():
        if line.strip():
            path, _, kind = line.split()
            out[Path(path).name] = kind
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    data, types = Path(sys.argv[2]), cell_types()
    for kind in sorted(set(types.values())):
        mine = [r for r in rows if types[Path(r["file"]).name] == kind]
        if not mine:
            continue
        right = np.mean([int(r["correct"]) for r in mine])
        per_class = {c: f"{np.mean([int(r['correct']) for r in mine if r['true'] == c]):.2f} of "
                        f"{sum(r['true'] == c for r in mine)}"
                     for c in sorted({r["true"] for r in mine})}
        mistakes = Counter(f"{r['true']}->{r['predicted']}" for r in mine if r["correct"] == "0")
        print(f"{kind}: {len(mine)} cells, accuracy {right:.3f}; recall {per_class}")
        print(f"  mistakes: {dict(mistakes.most_common())}")
    if len(sys.argv) > 3:
        import cv2

        missed = [r for r in rows if r["true"] == "p100" and r["predicted"] == "ok"][:16]
        tiles = []
        for r in missed:
            im = cv2.resize(cv2.imread(str(data / r["file"]), cv2.IMREAD_GRAYSCALE), (240, 240),
                            interpolation=cv2.INTER_AREA)
            cv2.putText(im, f"{types[Path(r['file']).name]} {float(r['p_true']):.2f}", (4, 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
            tiles.append(im)
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 8) if tiles else []
        if tiles:
            cv2.imwrite(sys.argv[3], np.vstack([np.hstack(tiles[i:i + 8]) for i in range(0, len(tiles), 8)]))
            print(f"wrote {sys.argv[3]} ({len(missed)} fully defective cells called defect-free)")


if __name__ == "__main__":
    main()
