"""Build pycuda from its sdist on the GPU machine (PyPI has no pycuda wheels; that machine cannot download):
configure against the CUDA toolkit that nvcc belongs to, compile the extension's sources in parallel and
leave the built package in place, so that adding SRC to sys.path imports it.

    python3 benchmarks/build_pycuda.py .pycuda/pycuda-2026.1.tar.gz /tmp/pycuda-build

Writes DEST/status.json ({"ok", "seconds", "src" or "error"}) when done; benchmarks/device.sh starts it in
the background so that the build's minutes overlap the CuPy steps, and device.py's pycuda step waits for
it. The build time is recorded and kept out of every measurement.
"""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def cuda_root() -> Path:
    nvcc = shutil.which("nvcc")
    if not nvcc:
        raise RuntimeError("nvcc not on PATH")
    # A wrapper script (as on the dev machine) execs the real nvcc: ask nvcc itself where it lives.
    probe = Path("/tmp/nvcc-probe.cu")
    probe.write_text("")
    out = subprocess.run([nvcc, "--dryrun", "-c", str(probe)], capture_output=True, text=True, check=False).stderr
    for line in out.splitlines():
        if "TOP=" in line:
            return Path(os.path.realpath(line.split("TOP=", 1)[1].strip()))
    return Path(os.path.realpath(nvcc)).parents[1]


def libcuda_dir(root: Path) -> Path:
    """A folder with an unversioned libcuda.so to link against: $LIBCUDA_DIR, the toolkit's stub, else the
    driver's own libcuda.so.1 through a link made in a scratch folder."""
    given = [Path(p) for p in os.environ.get("LIBCUDA_DIR", "").split(os.pathsep) if p]
    for d in (*given, root / "lib64" / "stubs", root / "lib" / "stubs", root / "targets/x86_64-linux/lib/stubs"):
        if (d / "libcuda.so").exists():
            return d
    found = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    libs = [Path(line.rsplit("=>", 1)[1].strip()) for line in found.splitlines()
            if "libcuda.so.1 " in line and "x86-64" in line]
    for d in (*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), "/usr/local/nvidia/lib64",
              "/usr/lib/x86_64-linux-gnu", "/usr/lib64"):
        if d and (Path(d) / "libcuda.so").exists():
            return Path(d)
        if d and (Path(d) / "libcuda.so.1").exists():
            libs.append(Path(d) / "libcuda.so.1")
    for lib in libs:
        if lib.exists():
            link = Path("/tmp/libcuda-link")
            link.mkdir(exist_ok=True)
            (link / "libcuda.so").unlink(missing_ok=True)
            (link / "libcuda.so").symlink_to(lib)
            return link
    raise RuntimeError(f"no libcuda.so under {root} stubs nor in ldconfig's cache")


def parallel_compile() -> None:
    """setuptools compiles an extension's sources one by one; pycuda's are ~50 C++ files: compile them on
    every core (the same steps as distutils' CCompiler.compile, each object in its own thread)."""
    from setuptools._distutils import ccompiler

    def compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=False, extra_preargs=None,
                extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(os.cpu_count() or 4) as pool:
            list(pool.map(one, [o for o in objects if o in build]))
        return objects

    ccompiler.CCompiler.compile = compile


def main(sdist: str, dest: str) -> int:
    dest_p = Path(dest)
    dest_p.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    status: dict = {"sdist": sdist}
    try:
        with tarfile.open(sdist) as tf:
            tf.extractall(dest_p, filter="data")
        src = next(p for p in dest_p.iterdir() if p.is_dir() and p.name.startswith("pycuda-"))
        root = cuda_root()
        drv = libcuda_dir(root)
        status.update(cuda_root=str(root), libcuda_dir=str(drv))
        os.chdir(src)
        subprocess.run([sys.executable, "configure.py", f"--cuda-root={root}", f"--cudadrv-lib-dir={drv}",
                        "--no-cuda-enable-curand"], check=True)
        parallel_compile()
        sys.argv = ["setup.py", "build_ext", "--inplace"]
        sys.path.insert(0, str(src))          # setup.py imports its helper (aksetup_helper) from its folder
        runpy.run_path("setup.py", run_name="__main__")
        status.update(ok=True, src=str(src))
    except BaseException as e:  # noqa: BLE001 - SystemExit from setup() included: recorded for the waiting step
        status.update(ok=isinstance(e, SystemExit) and not e.code, error=f"{type(e).__name__}: {e}",
                      trace=traceback.format_exc()[-2000:])
        if status["ok"]:
            status["src"] = str(src)
    status["seconds"] = round(time.perf_counter() - t0, 1)
    (dest_p / "status.json").write_text(json.dumps(status, indent=2))
    print(json.dumps(status, indent=2), flush=True)
    return 0 if status.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
