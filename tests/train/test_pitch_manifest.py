"""The pitches a classifier learnt its defects at, as its manifest records them: each training image's own
(an .npz may record one), else --pixel-pitch-mm; the range is what served frames are read within."""
from types import SimpleNamespace

import pytest

from edge.train.train import TrainConfig, _manifest_base


def manifest(tmp_path, metas, pitch=None):
    arrays = SimpleNamespace(meta=metas, channel_names=["gray"])
    return _manifest_base(tmp_path / "m", TrainConfig(task="defect", pixel_pitch_mm=pitch), tmp_path, arrays, 1, 1)


@pytest.mark.parametrize("metas, pitch, nominal, span", [
    ([{}, {}], None, None, None),                                       # photographs, no pitch given
    ([{}, {}], 0.1, 0.1, [0.1, 0.1]),                                   # photographs at a declared pitch
    ([{"pixel_pitch_mm": 0.06}, {"pixel_pitch_mm": 0.12}, {"pixel_pitch_mm": 0.09}], None, 0.09, [0.06, 0.12]),
    # a verdict set from a finer camera (.npz with its pitch) added to photographs of a declared pitch
    ([{}, {}, {"pixel_pitch_mm": 0.05}], 0.1, 0.1, [0.05, 0.1]),
])
def test_the_range_covers_every_training_images_pitch(tmp_path, metas, pitch, nominal, span):
    m = manifest(tmp_path, metas, pitch)
    assert m["pixel_pitch_mm"] == nominal and m["pixel_pitch_range_mm"] == span
