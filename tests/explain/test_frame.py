"""Frames of any size through a trained classifier: the heatmap comes back in the frame's own pixels and
on the defect; a frame much larger than the training images is tiled, the worst tile decides, and the
stitched map points at the defect. The model is trained here, on bright spots in noise (48 px images)."""
import csv
import json
import re

import cv2
import numpy as np
import pytest

from edge.explain import GradCAMExplainer, explain_frames, frame_view
from edge.runtime.model import Model

pytestmark = pytest.mark.slow

SIZE = 48


def spot_image(rng, h, w, centre=None):
    img = rng.normal(110, 12, (h, w))
    if centre is not None:
        cv2.circle(img, (int(centre[1]), int(centre[0])), 4, 230, -1)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def spot_model(tmp_path_factory):
    from edge.train.train import TrainConfig, train

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("spots") / "data"
    for cls in ("ok", "spot"):
        (root / cls).mkdir(parents=True)
    for i in range(80):
        cv2.imwrite(str(root / "ok" / f"{i}.png"), spot_image(rng, SIZE, SIZE))
        c = rng.integers(8, SIZE - 8, 2)
        cv2.imwrite(str(root / "spot" / f"{i}.png"), spot_image(rng, SIZE, SIZE, c))
        mask = np.zeros((SIZE, SIZE), np.uint8)
        cv2.circle(mask, (int(c[1]), int(c[0])), 4, 255, -1)
        cv2.imwrite(str(root / "spot" / f"{i}.mask.png"), mask)
    out = tmp_path_factory.mktemp("spots") / "model"
    train(root, out, TrainConfig(task="defect", size=SIZE, epochs=12, width=8, threads=2,
                                   time_budget_min=None, pixel_pitch_mm=0.1), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["size"] == [SIZE, SIZE] and manifest["input"]["source_size"] == [SIZE, SIZE]
    assert manifest["pixel_pitch_mm"] == 0.1 and manifest["pixel_pitch_range_mm"] == [0.1, 0.1]   # as declared
    return Model.load(out)


def _planes(img):
    return (img.astype(np.float32) / 255)[None]     # the loader's scaling of 8-bit photographs


def test_a_wide_frame_is_letterboxed_and_its_map_lands_on_the_spot(spot_model):
    rng = np.random.default_rng(1)
    frame = spot_image(rng, 40, 64, centre=(20, 48))      # not the training shape: 40x64, spot on the right
    [r] = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(frame), spot_model)])
    assert r.tiles == 1 and r.heatmap.shape == (40, 64) and r.explanation.prediction.label == "spot"
    row, col = np.unravel_index(np.argmax(r.heatmap), r.heatmap.shape)
    cell = 8 / r.view.scale                  # a 1/8-resolution map points to within one cell: 10.7 frame px
    assert abs(row - 20) <= cell and abs(col - 48) <= cell


def test_a_large_frame_is_tiled_the_worst_tile_decides_and_the_map_is_stitched(spot_model):
    rng = np.random.default_rng(2)
    clean = spot_image(rng, 160, 240)
    view = frame_view(_planes(clean), spot_model)
    assert view.tiling is not None and len(view.x) > 12                # 160x240 against 48 px training images
    [ok] = explain_frames(GradCAMExplainer(spot_model), [view])
    assert ok.explanation.prediction.label == "ok" and ok.heatmap.shape == (160, 240)
    frame = spot_image(rng, 160, 240, centre=(121, 187))
    [r] = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(frame), spot_model)])
    assert r.explanation.prediction.label == "spot" and r.heatmap.shape == (160, 240)
    x0, y0, x1, y1 = r.tile_box
    assert x0 <= 187 < x1 and y0 <= 121 < y1                          # the deciding tile holds the spot
    row, col = np.unravel_index(np.argmax(r.heatmap), r.heatmap.shape)
    assert abs(row - 121) <= 8 and abs(col - 187) <= 8                # and the stitched map's peak, within a cell


def test_tiles_of_another_class_are_re_explained_from_their_activations_as_a_second_pass_would(spot_model,
                                                                                             monkeypatch):
    """A tiled frame decided "spot": the tiles that said "ok" need their map for "spot". With the model's
    head_gradient graph they get it from the activations the first call returned (one gradcam call in
    all), the same maps a second gradcam call on those tiles gives."""
    assert "head_gradient" in spot_model.graphs                        # every new export carries it
    rng = np.random.default_rng(5)
    frame = spot_image(rng, 160, 240, centre=(40, 60))
    view = frame_view(_planes(frame), spot_model)
    calls = []
    run = spot_model.run
    monkeypatch.setattr(spot_model, "run", lambda graph, feeds: calls.append(graph) or run(graph, feeds))
    [fast] = explain_frames(GradCAMExplainer(spot_model), [view])
    assert calls == ["gradcam", "head_gradient"]
    calls.clear()
    monkeypatch.setattr(GradCAMExplainer, "retarget", lambda self, explanations, classes: None)
    [slow] = explain_frames(GradCAMExplainer(spot_model), [view])
    assert calls == ["gradcam", "gradcam"]                             # a model without the graph: as before
    assert fast.explanation.prediction.label == slow.explanation.prediction.label == "spot"
    assert fast.tile == slow.tile
    np.testing.assert_allclose(fast.heatmap, slow.heatmap, atol=1e-5)


def test_explain_on_a_large_frame_says_places_in_the_frames_pixels(spot_model, tmp_path, capsys):
    from edge.cli import main

    rng = np.random.default_rng(3)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), spot_image(rng, 160, 240, centre=(121, 187)))
    assert main(["explain", "--model", str(spot_model.dir), "--input", str(path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frame"]["height"] == 160 and r["frame"]["width"] == 240 and r["frame"]["tiles"] > 1
    # the model records a 0.1 mm pitch, which a frame sent without its own is taken to have
    right, down = map(float, re.search(r"([\d.]+) mm right and ([\d.]+) mm down", r["explanation"]).groups())
    assert abs(down / 0.1 - 121) <= 12 and abs(right / 0.1 - 187) <= 12, r["explanation"]   # the frame's, not the tile's


def test_evaluate_and_the_audit_read_large_frames_in_tiles_as_served(spot_model, tmp_path):
    from edge.evaluate import evaluate, format_report

    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    for cls in ("ok", "spot"):
        (data / cls).mkdir(parents=True)
    oks = [spot_image(rng, SIZE, SIZE), spot_image(rng, 160, 240)]
    cv2.imwrite(str(data / "ok" / "small.png"), oks[0])
    cv2.imwrite(str(data / "ok" / "large.png"), oks[1])
    served_ok = [r.explanation.prediction.label for r in explain_frames(
        GradCAMExplainer(spot_model), [frame_view(_planes(img), spot_model) for img in oks])]
    # spots of radius 3 in 160x240 frames: shrunk whole into 48 px they are about half lost, in tiles found
    served = []
    for i in range(6):
        img = rng.normal(110, 12, (160, 240))
        cv2.circle(img, (int(rng.integers(20, 220)), int(rng.integers(20, 140))), 3, 230, -1)
        img = img.clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(data / "spot" / f"large{i}.png"), img)
        [r] = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(img), spot_model)])
        served.append(r.explanation.prediction.label)
    metrics = evaluate(spot_model.dir, data, progress=False, predictions=tmp_path / "rows.csv")
    assert metrics["tiled_frames"] == 7 and "7 frames much larger" in format_report(metrics)
    # evaluate counts what the served path answers for the same files
    assert metrics["per_class"]["spot"]["recall"] == served.count("spot") / 6
    assert metrics["per_class"]["ok"]["recall"] == served_ok.count("ok") / 2   # the whole frame and the tiled one
    # and its per-sample rows say which frames were read in tiles, with the answer served for each
    with (tmp_path / "rows.csv").open() as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert {k: r["read"] for k, r in rows.items()} == {"ok/small.png": "whole", "ok/large.png": "tiles",
                                                        **{f"spot/large{i}.png": "tiles" for i in range(6)}}
    assert [rows[f"spot/large{i}.png"]["predicted"] for i in range(6)] == served
    assert [rows[f"ok/{n}.png"]["predicted"] for n in ("small", "large")] == served_ok
    for f in [data / "ok" / "large.png", *(data / "spot").glob("large*.png")]:
        f.unlink()
    cv2.imwrite(str(data / "spot" / "same.png"), spot_image(rng, SIZE, SIZE, centre=(20, 20)))
    assert "tiled_frames" not in evaluate(spot_model.dir, data, progress=False)
    # the audit judges the tiles the model reads; a large defect frame without a mask cannot be labelled
    # tile by tile: left out of the tiles and said, while its own decision counts among the frames'
    from edge.audit.run import audit

    cv2.imwrite(str(data / "spot" / "large.png"), spot_image(rng, 160, 240, centre=(121, 187)))
    audit(spot_model.dir, data, tmp_path / "audit", progress=False, shap_samples=2)
    m = json.loads((tmp_path / "audit" / "metrics.json").read_text())
    [note] = [n for n in m["notes"] if n.startswith("1 of 3 frames are much larger")]
    assert "this audit judges what the model reads" in note and "1 unannotated frames left out" in note
    assert m["frames"]["tiled_frames"] == 1 and m["frames"]["samples"] == 3 and m["data"]["samples"] == 2
    assert "1 of 3 frames are much larger" in (tmp_path / "audit" / "report.html").read_text()


def test_a_frame_from_a_finer_camera_sent_with_its_pitch_is_read_as_training_read_its_images(spot_model, tmp_path,
                                                                                           capsys):
    from edge.cli import main

    rng = np.random.default_rng(4)
    small = spot_image(rng, SIZE, SIZE, centre=(30, 14))
    frame = cv2.resize(small, (3 * SIZE, 3 * SIZE), interpolation=cv2.INTER_LINEAR)   # 3x the resolution
    assert frame_view(_planes(frame), spot_model).tiling is not None     # without its pitch: tiles of a magnified spot
    [r] = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(frame), spot_model, pixel_pitch_mm=0.1 / 3)])
    assert r.tiles == 1 and r.explanation.prediction.label == "spot" and r.heatmap.shape == frame.shape
    row, col = np.unravel_index(np.argmax(r.heatmap), r.heatmap.shape)
    assert abs(row - 90) <= 3 * 8 and abs(col - 42) <= 3 * 8             # within a map cell, in frame pixels
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    assert main(["explain", "--model", str(spot_model.dir), "--input", str(path), "--pixel-pitch-mm", str(0.1 / 3),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frame"]["tiles"] == 1 and out["frame"]["pixel_pitch_mm"] == pytest.approx(0.1 / 3), out
    assert out["prediction"]["class"] == "spot", out
    assert " mm " in out["explanation"]                                  # places said in millimetres too
    # the text output says how the frame was read, and what to send when it was tiled at the training pitch
    assert main(["explain", "--model", str(spot_model.dir), "--input", str(path), "--pixel-pitch-mm", str(0.1 / 3)]) == 0
    assert "frame: 144x144 px, read whole" in capsys.readouterr().out
    assert main(["explain", "--model", str(spot_model.dir), "--input", str(path)]) == 0
    text = capsys.readouterr().out
    assert "frame: 144x144 px, inspected in" in text and "give its --pixel-pitch-mm" in text, text


def test_evaluate_reads_a_finer_cameras_set_at_the_training_pitch_as_the_service_does(spot_model, tmp_path):
    from edge.evaluate import evaluate

    rng = np.random.default_rng(5)
    data = tmp_path / "cam2"
    frames = {}
    for cls in ("ok", "spot"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            img = spot_image(rng, SIZE, SIZE, centre=None if cls == "ok" else rng.integers(10, SIZE - 10, 2))
            frames[(cls, i)] = cv2.resize(img, (3 * SIZE, 3 * SIZE), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(data / cls / f"{i}.png"), frames[(cls, i)])
    taken = evaluate(spot_model.dir, data, progress=False)
    assert taken["tiled_frames"] == 8 and "pixel_pitch_mm" not in taken          # as taken: 16 tiles a frame
    pitched = evaluate(spot_model.dir, data, progress=False, pixel_pitch_mm=0.1 / 3)
    assert "tiled_frames" not in pitched and pitched["pixel_pitch_mm"] == pytest.approx(0.1 / 3)
    served = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(f), spot_model, 0.1 / 3)
                                                           for f in frames.values()])
    right = [r.explanation.prediction.label == cls for (cls, _), r in zip(frames, served)]
    assert pitched["accuracy"] == pytest.approx(np.mean(right))                  # what the service answers


def test_files_that_record_their_pitch_are_read_at_it_as_the_station_sends_them(spot_model, tmp_path):
    """.npz frames carry their own pitch: evaluate, the audit and calibrate read each at it without an option
    (as the station sends it), and files of two pitches are tiled each at its own."""
    from edge.audit.run import audit
    from edge.evaluate import calibrate, evaluate

    rng = np.random.default_rng(7)
    data = tmp_path / "mixed"
    for cls in ("ok", "spot"):
        (data / cls).mkdir(parents=True)
    frames = {}
    for cls in ("ok", "spot"):
        for i in range(3):          # a 3x finer camera's frames of a training image's field, their pitch recorded
            c = None if cls == "ok" else rng.integers(10, SIZE - 10, 2)
            img = cv2.resize(spot_image(rng, SIZE, SIZE, centre=c), (3 * SIZE, 3 * SIZE),
                             interpolation=cv2.INTER_LINEAR)
            frames[(cls, i)] = img
            np.savez(data / cls / f"fine{i}.npz", image=_planes(img)[0], pixel_pitch_mm=np.float64(0.1 / 3))
    taken = evaluate(spot_model.dir, data, progress=False)
    assert "tiled_frames" not in taken                    # each read whole at its own pitch, no option needed
    served = explain_frames(GradCAMExplainer(spot_model), [frame_view(_planes(f), spot_model, 0.1 / 3)
                                                           for f in frames.values()])
    assert taken["accuracy"] == pytest.approx(np.mean([r.explanation.prediction.label == cls
                                                      for (cls, _), r in zip(frames, served)]))
    # two large spot frames of one field: a photograph at the training pitch (tiles of 48 px) and the same
    # scene from the finer camera (tiles of 144 px of its own pixels)
    big = spot_image(rng, 160, 240, centre=(100, 60))
    mask = np.zeros((160, 240), np.uint8)
    cv2.circle(mask, (60, 100), 4, 255, -1)
    cv2.imwrite(str(data / "spot" / "large.png"), big)
    cv2.imwrite(str(data / "spot" / "large.mask.png"), mask)
    np.savez(data / "spot" / "large_fine.npz", image=_planes(cv2.resize(big, (720, 480)))[0],
             mask=cv2.resize(mask, (720, 480), interpolation=cv2.INTER_NEAREST), pixel_pitch_mm=np.float64(0.1 / 3))
    assert evaluate(spot_model.dir, data, progress=False)["tiled_frames"] == 2
    m = audit(spot_model.dir, data, tmp_path / "audit", progress=False, shap_samples=2)
    assert m["data"]["tile_px"] == [SIZE, 3 * SIZE] and m["frames"]["tiled_frames"] == 2
    assert any("tiles of 48 or 144 px (by each frame's pitch)" in n for n in m["notes"])
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(spot_model.dir, model_dir)
    assert calibrate(model_dir, data, progress=False)["tiles"]["tile_px"] == [SIZE, 3 * SIZE]


def test_calibrate_fits_a_finer_cameras_frames_as_the_service_reads_them(spot_model, tmp_path):
    import shutil

    from edge.evaluate import calibrate

    rng = np.random.default_rng(6)
    data = tmp_path / "cam2"
    for cls in ("ok", "spot"):
        (data / cls).mkdir(parents=True)
        for i in range(20):
            img = spot_image(rng, SIZE, SIZE, centre=None if cls == "ok" else rng.integers(10, SIZE - 10, 2))
            cv2.imwrite(str(data / cls / f"{i}.png"), cv2.resize(img, (3 * SIZE, 3 * SIZE)))
    entries = {}
    for pitch in (None, 0.1 / 3):
        model_dir = tmp_path / f"model-{pitch}"           # calibrate writes into the model folder
        shutil.copytree(spot_model.dir, model_dir)
        entries[pitch] = calibrate(model_dir, data, progress=False, pixel_pitch_mm=pitch)
    # as taken, the frames are cut into tiles (the unannotated spot frames then left out: no labelled tile)
    assert entries[None]["tiles"]["frames"] == 20 and "pixel_pitch_mm" not in entries[None]
    assert "tiles" not in entries[0.1 / 3] and entries[0.1 / 3]["pixel_pitch_mm"] == pytest.approx(0.1 / 3)
