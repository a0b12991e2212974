"""Training on tiles cut from the data set's own frames, when letterboxing whole frames would erase their
smaller defects (`recipe.choose_tiling` decides; `--tile` overrides).

    with TrainingTiles.cut(data, found, tile, ok_class, train_idx, val_idx, seed, workdir) as tiles:
        arrays, train_idx, val_idx = tiles.load(size, channels)

The frames are split into training and validation first (stratified by the frame's class, seeded, as
whole-frame training splits), then each side is cut on its own with `edge.data.tiles.tile_dataset`'s
rules: overlapping tiles of a frame hold the same pixels, so tiles of one frame on both sides would make
the validation split (the kept checkpoint, the prior correction, the calibration, the review flag)
judge pixels the model trained on. Frames no larger than TILE_FACTOR tiles stay whole, as the served path
letterboxes them; defect frames that would be cut but carry no mask or boxes are dropped and counted
(`choose_tiling` does not tile a set where more than a tenth of them would be).

A set of large frames gives many clean tiles (a 2448x2048 frame gives 143 tiles of 256 px): beyond
MAX_TRAINING_TILES the clean tiles of both splits are thinned at random, the same share on each side
(never below as many clean tiles as defect tiles), and the class counts the prior correction reads are
scaled back to what the frames hold.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.data.arrays import Arrays, Survey, load_arrays, survey
from edge.data.geometry import TILE_FACTOR
from edge.data.tiles import tile_dataset
from edge.errors import InvalidInput

# Memory and time: 20 000 one-channel tiles at 256 px are 5.2 GB as float32; an epoch of the 4834 tiles of
# the large-frames stand-in took about 42 s at 160 px on a 2-core Xeon, so 20 000 tiles are about 3 min an
# epoch and 4 epochs of what the default 14 min budget leaves for training.
MAX_TRAINING_TILES = 20_000


@dataclass
class TrainingTiles:
    root: Path                      # holds train/ and val/ (removed on close)
    tile: int
    survey: Survey                  # of the training tiles: what the size and schedule are chosen from
    summary: dict = field(default_factory=dict)
    clean_share: float = 1.0        # share of clean tiles kept (1: none thinned)

    @classmethod
    def cut(cls, data: Path, found: Survey, tile: int, ok_class: str | None, train_idx: np.ndarray,
            val_idx: np.ndarray, seed: int, workdir: Path, progress: bool = True,
            max_tiles: int = MAX_TRAINING_TILES) -> TrainingTiles:
        """Cut the frames `found` describes (a survey of `data`), split into `train_idx` and `val_idx`
        (indices into the survey), into tiles under `workdir` (removed again if anything fails), each side
        on its own; thin clean tiles beyond `max_tiles`."""
        root = Path(workdir)
        try:
            return cls._cut(data, found, tile, ok_class, train_idx, val_idx, seed, root, progress, max_tiles)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    @classmethod
    def _cut(cls, data, found, tile, ok_class, train_idx, val_idx, seed, root, progress, max_tiles):
        summary = {}
        for side, idx in (("train", train_idx), ("val", val_idx)):
            if len(idx) == 0:
                continue
            summary[side] = tile_dataset(Path(data), root / side, tile, ok_class, unannotated="drop",
                                         progress=progress, keep_whole=int(TILE_FACTOR * tile),
                                         only={found.paths[i] for i in idx})
        if "train" not in summary or not summary["train"]["tiles"]:
            raise InvalidInput(f"{data}: cut into {tile} px tiles, no training tile was left "
                               f"({summary.get('train', {}).get('left_out')}); train on whole frames with --tile off")
        share = 1.0
        n_train = summary["train"]["tiles"]
        clean = summary["train"]["classes"].get(ok_class, 0) if ok_class else 0
        if n_train > max_tiles and clean:
            # never fewer clean tiles than defect tiles: a defect-free class thinned away would leave the
            # model nothing to call a clean surface (the cap is then exceeded by up to the defect tiles)
            defects = n_train - clean
            share = max((max_tiles - defects) / clean, min(1.0, defects / clean))
            rng = np.random.default_rng(seed)
            for side, cut in summary.items():
                cut["clean_tiles_removed"] = _thin(root / side / ok_class, share, rng)
        return cls(root, tile, survey(root / "train", progress=False), summary, share)

    def load(self, size: int, channels, progress: bool = True) -> tuple[Arrays, np.ndarray, np.ndarray]:
        """Both splits at the model's input size, concatenated: (arrays, training indices, validation indices)."""
        val = self.root / "val"
        has_val = val.is_dir() and any(p.is_dir() for p in val.iterdir())
        arrays = load_arrays([self.root / "train"] + ([val] if has_val else []), size, channels, progress=progress)
        n = len(self.survey.labels)              # the training tiles come first
        return arrays, np.arange(n), np.arange(n, len(arrays.labels))

    def class_counts(self, counts: np.ndarray, classes: list[str], ok_class: str | None) -> np.ndarray:
        """Training counts per class as the frames hold them: clean tiles thinned are counted back."""
        counts = np.asarray(counts, np.float64).copy()
        if self.clean_share < 1.0 and ok_class in classes and self.clean_share > 0:
            counts[classes.index(ok_class)] /= self.clean_share
        return np.round(counts).astype(np.int64)

    def describe(self) -> dict:
        """What the manifest keeps: the tile side, the counts written and left out per split."""
        out = {"tile": self.tile, "clean_tiles_kept_share": round(self.clean_share, 4)}
        for side, s in self.summary.items():
            out[side] = {"frames": s["frames"], "tiles": s["tiles"], "classes": s["classes"],
                         "left_out": s["left_out"], **({"clean_tiles_removed": s["clean_tiles_removed"]}
                                                       if "clean_tiles_removed" in s else {})}
        return out

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _thin(folder: Path, share: float, rng: np.random.Generator) -> int:
    """Delete a random (1 - share) of the clean tiles in `folder` (a clean tile has no annotation file);
    returns how many."""
    if not folder.is_dir():
        return 0
    files = sorted(p for p in folder.iterdir() if p.is_file())
    drop = rng.permutation(len(files))[:len(files) - round(share * len(files))]
    for i in drop:
        files[i].unlink()
    return len(drop)
