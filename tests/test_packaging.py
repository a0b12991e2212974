"""A node installs from a wheel, not a checkout: the wheel carries the models, the HMI page and the kernels,
and `edge-xai demo` runs from it outside the repository."""
import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    [whl] = out.glob("edge_xai-*.whl")
    return whl


def test_the_wheel_carries_models_page_and_kernels(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for model in ("defect", "thermal", "phase"):
        assert any(n.endswith(f"share/edge-xai/models/{model}/manifest.json") for n in names), model
    assert "edge/hmi/static/index.html" in names
    assert any(n.endswith("share/edge-xai/kernels/gradcam.cu") for n in names)


def test_demo_runs_from_the_installed_wheel(wheel, tmp_path):
    venv = tmp_path / "venv"
    # the dependencies come from this interpreter (no download in tests); the package only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    where = subprocess.run([str(py), "-c", "import edge, edge.resources as r; print(edge.__file__); print(r.models_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == str(venv / "share" / "edge-xai" / "models")
    r = subprocess.run([str(venv / "bin" / "edge-xai"), "demo", "--count", "2", "--rate", "4", "--hmi", "127.0.0.1:0"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    assert "stopped after 2 inspections (0 errors)" in r.stdout
