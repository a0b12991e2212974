"""The command line as a user meets it: help, errors without tracebacks, the simulate command."""
import contextlib
import re
import subprocess
import sys

import pytest
from helpers import MODELS

from edge.cli import main

COMMANDS = ["simulate", "train", "export", "evaluate", "calibrate", "dataset", "export-triton", "explain", "serve", "station", "demo", "audit", "gate"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = _run(command, "--help")
    assert r.returncode == 0 and "usage: edge-xai " + command in r.stdout


def test_top_level_help_lists_commands():
    r = _run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)


def test_simulate_writes_a_dataset(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "d"), "--n", "6", "--seed", "2", "--size", "32", "--quiet"]) == 0
    assert len(list((tmp_path / "d").glob("*/*.npz"))) == 6
    assert "wrote 6 samples" in capsys.readouterr().out


def test_simulate_makes_frames_of_another_set_up(tmp_path):
    """--emissivity, --pitch-mm, --geometries: another coating, pixel pitch and shape mix (frames for
    `audit --ood`), kept in dataset.json; the frames differ from the default set-up's only where they should."""
    import json

    import numpy as np

    args = ["--n", "6", "--seed", "2", "--size", "32", "--quiet"]
    assert main(["simulate", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["simulate", "--out", str(tmp_path / "b"), *args, "--emissivity", "0.6", "--pitch-mm", "0.2,0.3",
                 "--geometries", "cylinder, step", "--temperature-k", "293.15,300"]) == 0
    config = json.loads((tmp_path / "b" / "dataset.json").read_text())["config"]
    assert config["emissivity_normal"] == 0.6 and config["pitch_mm"] == [0.2, 0.3]
    assert config["temperature_k"] == [293.15, 300]
    assert config["geometries"] == ["cylinder", "step"]
    for f in sorted((tmp_path / "b").glob("*/*.npz")):
        b, a = np.load(f), np.load(tmp_path / "a" / f.parent.name / f.name)
        assert str(b["geometry"]) in ("cylinder", "step") and 0.2 <= float(b["pixel_pitch_mm"]) <= 0.3
        # parts from ambient to 300 K (a gradient of up to +-3 K across the part; delaminations a little warmer)
        assert 293.15 - 3 < float(np.median(b["true_temperature"])) < 300 + 3 < float(np.median(a["true_temperature"]))
        assert not np.allclose(a["thermal"], b["thermal"])


@pytest.mark.parametrize("args, message", [
    (["--emissivity", "1.5"], "--emissivity 1.5: expected a value in (0, 1]"),
    (["--pitch-mm", "0.2"], "--pitch-mm '0.2': expected LOW,HIGH"),
    (["--pitch-mm", "0.3,0.2"], "--pitch-mm '0.3,0.2': expected 0 < LOW <= HIGH in mm per pixel"),
    (["--temperature-k", "380,330"], "--temperature-k '380,330': expected 0 < LOW <= HIGH in kelvin"),
    (["--temperature-k", "hot"], "--temperature-k 'hot': expected LOW,HIGH in kelvin"),
    (["--geometries", "cylinder,cube"], "expected one or more of flat, v_groove"),
])
def test_simulate_names_a_bad_set_up_option(tmp_path, capsys, args, message):
    assert main(["simulate", "--out", str(tmp_path / "d"), "--n", "3", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_simulate_refuses_a_used_folder_with_a_clear_message(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    r = _run("simulate", "--out", str(tmp_path / "d"), "--n", "3")
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_names_a_missing_model_folder(tmp_path):
    r = _run("evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path))
    assert r.returncode == 2 and "no manifest" in r.stderr


def test_evaluate_refuses_a_predictions_path_it_could_not_write_before_any_work(tmp_path, capsys):
    # checked before the model is even read: a long evaluation must not end on an unwritable path
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path),
                 "--predictions", str(tmp_path)]) == 2
    assert f"--predictions {tmp_path}: is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path),
                 "--predictions", str(tmp_path / "file" / "rows.csv")]) == 2
    assert "cannot create its folder" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--lr", "0"], "--lr must be positive"),
    (["--backbone", "vgg"], "invalid choice: 'vgg'"),
    (["--pixel-pitch-mm", "-0.05"], "--pixel-pitch-mm -0.05: expected a positive number of mm per pixel"),
])
def test_train_names_a_bad_option_before_any_work(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) if "choice" in message else contextlib.nullcontext():
        assert main(["train", "--task", "defect", "--data", str(tmp_path), "--out", str(tmp_path / "m"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def frame_file(tmp_path_factory):
    """One simulated crack frame at the shipped models' size."""
    from edge.sim.sample import write_dataset

    d = write_dataset(tmp_path_factory.mktemp("frames") / "d", 2, seed=1000, progress=False)
    return d / "crack" / "s1000_000001.npz"


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "gradcam-elementwise", "ig"])
def test_explain_json_has_prediction_sentence_and_timings(frame_file, tmp_path, capsys, method):
    import json

    import cv2
    import numpy as np

    out, maps = tmp_path / "overlay.png", tmp_path / "maps.npz"
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(frame_file), "--method", method,
                 "--out", str(out), "--npy", str(maps), "--json", "--steps", "32", "--channel", "intensity"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["prediction"]["class"] == "crack" and set(r["prediction"]["probabilities"]) >= {"ok", "crack"}
    assert 0.99 < sum(r["prediction"]["probabilities"].values()) < 1.01
    assert r["explanation"].startswith("Defect classified as CRACK")
    assert r["timings_ms"] and all(v >= 0 for v in r["timings_ms"].values())
    assert r["model_sha256"] and len(r["model_sha256"]) == 64
    if method == "ig":
        # 32 steps: on this frame 16 left 9 % of the score unexplained (0.2 % at 32; 2026-11-30)
        assert r["completeness_delta"]["relative"] < 0.05 and r["n_steps"] == 32
    img = cv2.imread(str(out))
    assert img.shape == (128, 128, 3)
    with np.load(maps) as z:
        assert z["attribution"].shape == (128, 128) and z["heatmap"].max() <= 1


def test_explain_says_whether_the_service_would_flag_the_part(frame_file, tmp_path, capsys):
    """The review flag on the model's own map, as the service raises it: a clear crack is not flagged, the
    same part with every channel flattened is unlike anything trained on; another CAM's map has no
    thresholds, so nothing is said."""
    import json

    import numpy as np

    with np.load(frame_file) as z:
        planes = {k: z[k] for k in z.files}
    for name in planes["channel_names"]:
        planes[str(name)] = np.full_like(planes[str(name)], float(np.median(planes[str(name)])))
    flat = tmp_path / "flat.npz"
    np.savez(flat, **planes)
    verdicts = []
    for f in (frame_file, flat):
        assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(f), "--json"]) == 0
        verdicts.append(json.loads(capsys.readouterr().out)["review"])
    assert verdicts[0] == {"flagged": False, "reasons": []}
    assert verdicts[1]["flagged"] and "unlike the training data" in verdicts[1]["reasons"]
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(flat)]) == 0
    assert "review: flagged (" in capsys.readouterr().out
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(flat), "--json",
                 "--method", "gradcam++"]) == 0
    assert "review" not in json.loads(capsys.readouterr().out)


def test_explain_guided_and_sensors(frame_file, capsys):
    """--guided: a thinner map, said in the record and the sentence; --sensors: shares per channel that sum
    to 1, quoted at the end of the sentence."""
    import json

    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(frame_file), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(frame_file), "--json", "--guided",
                 "--sensors"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["guided"] is True and "guided HiResCAM" in r["explanation"] and "guided" in r["timings_ms"]
    assert "guided" not in plain and r["prediction"] == plain["prediction"]
    assert set(r["sensors"]) == {"thermal", "phase", "intensity"} and abs(sum(r["sensors"].values()) - 1) < 1e-3
    top = max(r["sensors"], key=r["sensors"].get)
    said = re.search(r"Evidence by sensor: (\d+) % (\w+)", r["explanation"])
    # the sentence rounds the share itself, the JSON keeps three decimals: they agree within a point
    assert r["explanation"].endswith(".") and said and said.group(2) == top
    assert abs(int(said.group(1)) - 100 * r["sensors"][top]) <= 1


def test_explain_regression_roi_and_text_output(frame_file, capsys):
    assert main(["explain", "--model", str(MODELS / "thermal"), "--input", str(frame_file), "--method", "ig",
                 "--target", "roi:40:60,40:60", "--tolerance", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "prediction: output mean" in text and " K " in text and "completeness delta" in text
    # the thermal model's default: the size of its correction in the ROI (the physics audit's quantity)
    assert "explained: |correction| roi:40:60,40:60 by ig" in text
    assert main(["explain", "--model", str(MODELS / "thermal"), "--input", str(frame_file), "--method", "ig",
                 "--target", "roi:40:60,40:60", "--steps", "8", "--quantity", "output"]) == 0
    assert "explained: output roi:40:60,40:60 by ig" in capsys.readouterr().out


def test_explain_shap_prints_efficiency(frame_file, capsys):
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(frame_file), "--method", "shap",
                 "--patch", "16", "--stride", "16", "--shap-budget", "128"]) == 0
    text = capsys.readouterr().out
    assert "SHAP: 128 evaluations, efficiency gap" in text and "SHAP log-odds" in text


@pytest.mark.parametrize("args, message", [
    (["--model", str(MODELS / "thermal"), "--method", "gradcam"], "no gradcam graph"),
    (["--model", str(MODELS / "defect"), "--target", "bubble"], "target class 'bubble'"),
    (["--model", str(MODELS / "thermal"), "--method", "ig", "--target", "pixel:200,3"], "outside the 128x128 output"),
    (["--model", str(MODELS / "defect"), "--channel", "depth"], "--channel 'depth'"),
    (["--model", str(MODELS / "defect"), "--method", "ig", "--baseline", "grey"], "baseline 'grey'"),
    (["--model", str(MODELS / "thermal"), "--sensors"], "--sensors splits a classifier's"),
    (["--model", str(MODELS / "defect"), "--method", "ig", "--guided"], "--guided refines class activation maps"),
    (["--model", str(MODELS / "defect"), "--out", "overlay"], "--out overlay: the overlay is an image"),
    (["--model", str(MODELS / "defect"), "--pixel-pitch-mm", "nan"], "--pixel-pitch-mm nan: expected a positive"),
])
def test_explain_errors_name_what_is_wrong(frame_file, capsys, args, message):
    assert main(["explain", "--input", str(frame_file), *args]) == 2
    assert message in capsys.readouterr().err


def test_explain_names_a_missing_input(capsys):
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", "nope.npz"]) == 2
    assert "nope.npz: no such file" in capsys.readouterr().err
    assert main(["explain", "--model", str(MODELS / "defect"), "--input", str(MODELS)]) == 2
    assert "a folder; this reads one file" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_server_hmi_and_station_then_stops(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--count", "4", "--rate", "4", "--hmi",
                        "127.0.0.1:0", "--store", str(tmp_path / "demo.sqlite")], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert "HMI at http://127.0.0.1:" in r.stdout and "stopped after 4 inspections (0 errors)" in r.stdout
    from edge.record import InspectionStore

    assert InspectionStore(tmp_path / "demo.sqlite").count() == 4


@pytest.mark.slow
def test_demo_keeps_frames_on_request_and_verdicts_on_them_become_a_data_set(tmp_path):
    """The retraining loop from embedded defaults: demo --store-frames keeps each frame, an operator's
    verdict (here written to the store as the HMI does) and dataset --from-store make a folder training reads."""
    from edge.data.arrays import load_arrays
    from edge.record import InspectionStore

    store = tmp_path / "demo.sqlite"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--count", "3", "--rate", "4", "--hmi", "127.0.0.1:0",
                        "--store", str(store), "--store-frames"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    s = InspectionStore(store)
    ids = [ins.inspection_id for ins in s.recent(10)]
    assert len(ids) == 3 and all(s.frame(i) is not None for i in ids)
    s.put_verdict(ids[0], False, "crack", "anna")
    s.close()
    assert main(["dataset", "--from-store", str(store), "--out", str(tmp_path / "set"), "--quiet"]) == 0
    assert load_arrays(tmp_path / "set", 128, progress=False).labels == ["crack"]


@pytest.mark.slow
def test_station_reports_json_and_fails_on_errors(tmp_path):
    import json

    r = subprocess.run([sys.executable, "-m", "edge.cli", "station", "--target", "127.0.0.1:9", "--count", "2",
                        "--rate", "20", "--timeout", "0.5", "--json"], capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["sent"] == 2 and out["errors"] == 2 and out["ok"] == 0
    assert set(out) >= {"sent", "ok", "errors", "rate_hz", "p50_ms", "p95_ms", "p99_ms"}


@pytest.mark.slow
def test_serve_refuses_to_start_when_no_audited_classifier_is_left(tmp_path):
    import json
    import shutil

    models = tmp_path / "models"
    for name in ("defect", "thermal"):
        shutil.copytree(MODELS / name, models / name, ignore=shutil.ignore_patterns(".engines"))
        manifest = json.loads((models / name / "manifest.json").read_text())
        manifest.pop("audit", None)                  # as trained: nobody has audited these copies
        (models / name / "manifest.json").write_text(json.dumps(manifest))
    r = subprocess.run([sys.executable, "-m", "edge.cli", "serve", "--grpc", "127.0.0.1:0", "--hmi", "off", "--store",
                        str(tmp_path / "a.sqlite"), "--models", str(models)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "refusing to serve models without a passing audit: defect: not audited; thermal: not audited" in r.stderr
    assert "no audited classifier is left" in r.stderr and "--allow-unaudited" in r.stderr
    assert "Traceback" not in r.stderr and "Event loop is closed" not in r.stderr    # the listener closed cleanly


def test_station_names_an_unknown_explanation_kind(capsys):
    assert main(["station", "--target", "127.0.0.1:9", "--explain", "ig,foo"]) == 2
    assert "--explain 'ig,foo': unknown kind(s) foo" in capsys.readouterr().err


def test_sigterm_while_writing_leaves_nothing_behind(tmp_path):
    # a scheduler's stop or `kill` while simulate writes: the half-written folder is removed, as on Ctrl-C
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "simulate", "--out", str(tmp_path / "d"), "--n",
                          "100000", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not any(tmp_path.glob(".d.partial-*/**/*.npz")) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.1)
        assert any(tmp_path.glob(".d.partial-*/**/*.npz")), "simulate wrote nothing to stop"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and f"terminated (SIGTERM): nothing was written to {tmp_path / 'd'}" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_data_sets_pitch_needs_a_model_that_records_its_own(tmp_path, capsys):
    for command in (["evaluate"], ["calibrate"], ["audit", "--out", str(tmp_path / "report")]):
        assert main([*command, "--model", str(MODELS / "defect"), "--data", str(tmp_path), "--pixel-pitch-mm",
                     "0.05"]) == 2
        assert "--pixel-pitch-mm: model defect records no training pitch" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "report"), "--model", str(MODELS / "defect"), "--data", str(tmp_path),
                 "--ood", str(tmp_path), "--ood-pixel-pitch-mm", "0.05"]) == 2
    assert "--ood-pixel-pitch-mm: model defect records no training pitch" in capsys.readouterr().err
    assert main(["audit", "--out", str(tmp_path / "report"), "--model", str(MODELS / "defect"), "--data", str(tmp_path),
                 "--ood-pixel-pitch-mm", "-1"]) == 2
    assert "--ood-pixel-pitch-mm -1.0: expected a positive number" in capsys.readouterr().err


def test_station_pitch_is_for_files(capsys):
    assert main(["station", "--target", "127.0.0.1:9", "--pixel-pitch-mm", "0.05"]) == 2
    assert "--pixel-pitch-mm is the pitch of the --input files' camera" in capsys.readouterr().err


def test_a_bug_is_not_reported_as_a_user_error(monkeypatch, capsys):
    """Only the project's errors become one-line messages; a ValueError from a bug keeps its traceback."""
    import edge.sim.sample

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(edge.sim.sample, "write_dataset", broken)
    with pytest.raises(ValueError, match="broadcast"):
        main(["simulate", "--out", "x", "--n", "1"])
    assert capsys.readouterr().err == ""


def test_serve_takes_the_stores_retention_in_days_and_refuses_a_negative_one(tmp_path, capsys):
    from edge.cli import _serve_config, build_parser

    args = build_parser().parse_args(["serve", "--store", str(tmp_path / "a.sqlite"), "--retention-days", "30"])
    assert _serve_config(args).retention_days == 30
    assert _serve_config(build_parser().parse_args(["serve"])).retention_days == 0      # default: keep every one
    assert main(["serve", "--retention-days", "-1", "--hmi", "off", "--grpc", "127.0.0.1:0"]) == 2
    assert "retention_days -1.0: days to keep inspections, 0 or more" in capsys.readouterr().err
