"""The target-device run's script (benchmarks/device.py) dry-runs here: every step that needs no GPU runs,
the GPU steps are skipped by name, the kernel tests it will run collect, and the JSON is written."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_device_run_dry_runs_on_the_cpu(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device.py"), "--dry-run", "--out", str(tmp_path),
                        "--runs", "20"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [path] = tmp_path.glob("device-*.json")
    result = json.loads(path.read_text())
    steps = result["steps"]
    assert result["dry_run"] and (tmp_path / "device.log").is_file()
    assert {k: steps[k]["status"] for k in ("kernel_tests", "memcheck", "reference_libs")} == \
        {"kernel_tests": "skipped", "memcheck": "skipped", "reference_libs": "skipped"}
    assert steps["environment"]["status"] == "ok" and steps["carried"]["status"] == "ok"
    collected = steps["kernel_tests_collect"]
    n = int(re.search(r"(\d+)/\d+ tests collected", collected["tail"]).group(1))
    assert collected["status"] == "ok" and n >= 60            # both launchers x shapes x methods x shifts, and IG
    latency = steps["latency"]
    assert latency["status"] == "ok"
    for batch in ("b1", "b8"):
        assert {"numpy_gradcam", "numpy_hirescam", "torch_cpu_gradcam", "torch_cpu_hirescam"} <= set(latency["gradcam"][batch])
        assert {"numpy_interpolate", "numpy_reduce", "torch_cpu_interpolate", "torch_cpu_reduce"} <= set(latency["ig"][batch])


def test_the_orin_estimate_splits_rows_and_says_it_is_an_estimate(tmp_path):
    """benchmarks/orin_estimate.py: the two-batch split is exact for a linear row; on the committed H200 run
    every estimate is a range above the H200's own figure, and the output calls itself an estimate."""
    # loaded by path: benchmarks/ on sys.path would shadow packages by its scripts' names (its triton.py
    # hid the real triton from torch.export in every test after this one)
    spec = importlib.util.spec_from_file_location("orin_estimate", ROOT / "benchmarks" / "orin_estimate.py")
    orin_estimate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orin_estimate)

    assert orin_estimate.linear_split(1.0 + 2.0, 1.0 + 16.0) == (1.0, 2.0)
    out = tmp_path / "orin.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "orin_estimate.py"), "--out", str(out)],
                       check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("ESTIMATE (not measured)"), r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["kind"] == "estimate, not measured"
    for device in result["devices"].values():
        for row in ("predict", "gradcam", "ig_m50"):
            est = device["batch1"][row]
            assert result["h200_batch1_ms"][row] < est["low_ms"] <= est["high_ms"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "orin_estimate.py"), "--run", str(bad)],
                       check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "bad.json: no ort_cuda step" in r.stderr
