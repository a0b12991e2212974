"""Sentences: descriptors from region statistics (not from the label), places in words and mm."""
import collections

import numpy as np

from edge.explain.patch_stats import ImageContext, channel_mark, region_stats
from edge.explain.sentence import FINE_CORE_PX, FINE_WINDOW_PX, describe, explain_in_words, top_patches, where
from edge.sim.sample import simulate_sample

EXPECTED = {"crack": "crack-like", "scratch": "scratch-like", "pit": "hot spot", "contamination": "contamination-like",
            "delamination": "delamination", "ok": "geometric edge"}


def _centre(s):
    m = s["mask"] > 0
    if not m.any():
        m = s["edge_map"] > 0
        if not m.any():
            return None
        ys, xs = np.nonzero(m)
        return ys[len(ys) // 2], xs[len(xs) // 2]
    ys, xs = np.nonzero(m)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return ys[k], xs[k]


def test_each_class_is_described_by_its_own_signature_most_often():
    """On a seed the thresholds were not set on, the descriptor at the defect (at an edge for ok parts),
    read as the served sentence reads it (tight and 24 px windows), is for every class the class's own
    signature more often than any other descriptor; for the defects, in at least 3 of 5 frames (20 each)."""
    counts = collections.defaultdict(collections.Counter)
    for i in range(120):
        s = simulate_sample(i, 4000)
        c = _centre(s)
        if c is None:
            continue
        context = ImageContext({k: s[k] for k in ("thermal", "phase", "intensity")})
        box, pitch = (c[0] - 4, c[1] - 4, c[0] + 4, c[1] + 4), float(s["pixel_pitch_mm"])
        fine = region_stats(context, box, pitch, FINE_WINDOW_PX, FINE_CORE_PX)
        counts[str(s["label"])][describe(fine, region_stats(context, box, pitch))] += 1
    for label, wanted in EXPECTED.items():
        top, n = counts[label].most_common(1)[0]
        assert wanted in top, (label, counts[label])
        share = 0.4 if label == "ok" else 0.6
        assert n >= share * sum(counts[label].values()), (label, counts[label])


def test_channel_mark_finds_the_blob_at_the_centre_not_the_strongest_in_the_window():
    """A faint round spot at the evidence beside a strong line (a part's edge): the mark's core blob is
    the spot (small, round), while the window's peaks are the line's."""
    d = np.zeros((24, 24), np.float32)
    d[:, 2] = 50.0                              # a bright vertical line at the window's edge
    d[11:14, 11:14] = 5.0                       # a 3x3 bright spot at the centre
    d[18, 18] = -7.0                            # a dark dot
    m = channel_mark(d, 1.0, (12, 12), core_px=4)
    assert m.bright == 50.0 and m.dark == 7.0
    assert m.bright_core == 5.0 and m.bright_area == 9 and m.bright_circularity > 0.7
    assert m.dark_core == 0.0 and m.dark_area == 0           # nothing dark within 4 px of the centre
    assert channel_mark(d, 1.0, (12, 12), core_px=7).dark_core == 7.0


def test_where_in_words_and_mm():
    assert where((10, 10), (128, 128), 0.1).startswith("upper-left quadrant, 1.0 mm right and 1.0 mm down")
    assert where((100, 20), (128, 128), None) == "lower-left quadrant, at pixel row 100, column 20"
    assert where((64, 60), (128, 128), 0.1).startswith("centre")


def test_top_patches_skip_overlapping_repeats_and_non_positive_values():
    boxes = np.array([[0, 0, 8, 8], [0, 4, 8, 12], [40, 40, 48, 48], [80, 80, 88, 88]])
    assert top_patches(np.array([0.9, 0.8, 0.5, -1.0]), boxes) == [0, 2]
    assert top_patches(np.array([-0.1, -0.2, -0.3, -0.4]), boxes) == []


def test_sentences_for_a_defect_and_an_ok_part():
    s = simulate_sample(1, 1000)          # a crack
    channels = {k: s[k] for k in ("thermal", "phase", "intensity")}
    c = _centre(s)
    boxes = np.array([[c[0] - 4, c[1] - 4, c[0] + 4, c[1] + 4], [100, 100, 108, 108]])
    text, items = explain_in_words("crack", 0.942, np.array([0.62, 0.1]), boxes, channels,
                                   float(s["pixel_pitch_mm"]), value_name="SHAP")
    assert text.startswith("Defect classified as CRACK (confidence 94.2%). Primary evidence: ")
    assert "(SHAP +0.62)" in text and "K/mm" in text and "Secondary evidence" in text and " mm down" in text
    assert items[0]["descriptor"] == describe(items[0]["fine_stats"], items[0]["stats"])
    assert "depth" not in text and "deep" not in text    # nothing the data cannot support
    ok_text, _ = explain_in_words("ok", 0.99, np.array([-0.1, -0.2]), boxes, channels, None)
    assert ok_text.startswith("Part classified as OK, no defect found (confidence 99.0%).")
    assert "No region stands out" in ok_text
    # an OK answer resting on the crack's region says what is there, not the defect it resembles
    ok_text, ok_items = explain_in_words("ok", 0.6, np.array([0.62, 0.1]), boxes, channels, float(s["pixel_pitch_mm"]))
    assert ok_items[0]["descriptor"] == "sharp linear discontinuity with a thermal step"
    assert "Strongest support for OK: sharp linear discontinuity with a thermal step in the" in ok_text
    assert "-like" not in ok_text and "consistent with" not in ok_text


def test_gray_images_get_sentences_without_thermal_claims():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(64, 64)).astype(np.float32)
    img[30, 10:50] += 12                                  # a bright line, 12x the noise
    text, items = explain_in_words("scratch", 0.8, np.array([1.0]), np.array([[26, 26, 34, 34]]),
                                   {"gray": img}, None)
    assert "K/mm" not in text and "thermal" not in text
    assert items[0]["stats"].thermal_gradient_k_per_mm is None
    assert items[0]["descriptor"] == "linear scratch-like structure"
    blob = rng.normal(size=(64, 64)).astype(np.float32)
    blob[26:38, 26:38] -= 10                               # a broad dark stain, 10x the noise
    _, items = explain_in_words("stain", 0.8, np.array([1.0]), np.array([[28, 28, 36, 36]]), {"gray": blob}, None)
    assert items[0]["descriptor"] == "broad mark on the surface (stain-like)"    # not a thermal or shape claim
    spot = rng.normal(size=(64, 64)).astype(np.float32)
    spot[31:34, 31:34] -= 12                               # a 3 px dark pit
    _, items = explain_in_words("pit", 0.8, np.array([1.0]), np.array([[28, 28, 36, 36]]), {"gray": spot}, None)
    assert items[0]["descriptor"] == "small round spot on the surface (pit-like)"
    colour = {f"c{k}": rng.normal(size=(64, 64)).astype(np.float32) for k in range(3)}
    colour["c1"][30, 10:50] += 12                          # the line in one colour channel only
    _, items = explain_in_words("scratch", 0.8, np.array([1.0]), np.array([[26, 26, 34, 34]]), colour, None)
    assert items[0]["descriptor"] == "linear scratch-like structure"
    assert "linear" in text


def test_the_fast_median_and_percentile_are_numpys():
    """patch_stats' one-partition median and percentile return exactly what NumPy's do (the descriptor
    thresholds were set with NumPy's)."""
    from edge.explain.patch_stats import _median, _percentile
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 64, 255, 256, 4096):
        a = (rng.random(n) * 40).astype(np.float32)
        assert _median(a) == float(np.median(a))
        for q in (0, 50, 95, 100):
            assert _percentile(a, q) == float(np.percentile(a, q))
    img = rng.random((128, 128)).astype(np.float32)
    assert _median(img[::2, ::2]) == float(np.median(img[::2, ::2]))
    assert _percentile(img[40:56, 40:56], 95) == float(np.percentile(img[40:56, 40:56], 95))


def test_the_blob_is_the_seeds_8_connected_component_at_half_its_strength():
    """_blob's flood fill gives the component that labelling every component and picking the seed's
    gives (the way it was computed before), its area and circularity alike."""
    import cv2

    from edge.explain.patch_stats import _blob
    rng = np.random.default_rng(5)
    for size, sigma in ((16, 0.6), (24, 1.0), (24, 2.5), (9, 0.0)):
        for _ in range(20):
            s = rng.normal(size=(size, size)).astype(np.float32)
            s = np.maximum(cv2.GaussianBlur(s, (0, 0), sigma) if sigma else s, 0)
            seed = tuple(int(v) for v in rng.integers(0, size, 2))
            s[seed] = max(float(s[seed]), 0.1)
            for at in (None, seed):
                peak = np.unravel_index(np.argmax(s), s.shape) if at is None else at
                _, labels = cv2.connectedComponents((s >= 0.5 * s[peak]).astype(np.uint8), connectivity=8)
                blob = (labels == labels[peak]).astype(np.uint8)
                contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                perimeter = max(cv2.arcLength(max(contours, key=cv2.contourArea), True), 1.0)
                area = int(blob.sum())
                circularity = 1.0 if area <= 2 else float(min(4 * np.pi * area / perimeter**2, 1.0))
                assert _blob(s, at) == (circularity, area)
    line = np.zeros((12, 12), np.float32)
    line[6, 1:11] = 1.0
    line[2, 2] = 1.0                                       # as strong, but not connected to the seed
    circularity, area = _blob(line, (6, 5))
    assert area == 10 and circularity < 0.5              # a line, not a round spot (those read 0.8-1)
