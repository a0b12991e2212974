"""A real Triton Inference Server (PyPI nvidia-pytriton's bundled tritonserver) serving a model folder, in
a subprocess under its own interpreter (tests/helpers/triton_serve.py says why).

    with TritonServer(Path("models/defect")) as t:
        Model.load(Path("models/defect"), backend=t.backend)        # triton://127.0.0.1:PORT

The interpreter: $EDGE_XAI_TRITON_PYTHON, else .venv-triton/bin/python in the repository (tests/setup.sh
creates it); tests skip with the reason where neither exists.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def triton_python() -> str | None:
    for candidate in (os.environ.get("EDGE_XAI_TRITON_PYTHON"), str(ROOT / ".venv-triton" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class TritonServer:
    def __init__(self, model_dir: Path, name: str | None = None, max_batch: int = 8, timeout_s: float = 120,
                 threads: int = 1):
        python = triton_python()
        if python is None:
            pytest.skip("no interpreter with nvidia-pytriton (tests/setup.sh creates .venv-triton; or set "
                        "EDGE_XAI_TRITON_PYTHON)")
        self.grpc_port, http, metrics = _free_ports(3)
        self.metrics_port = metrics
        self.backend = f"triton://127.0.0.1:{self.grpc_port}"
        args = [python, str(ROOT / "tests" / "helpers" / "triton_serve.py"), "--model", str(model_dir),
                "--grpc-port", str(self.grpc_port), "--http-port", str(http), "--metrics-port", str(metrics),
                "--max-batch", str(max_batch), "--threads", str(threads)]
        if name:
            args += ["--name", name]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.log: list[str] = []

        def read():
            for line in self.proc.stdout:
                self.log.append(line)

        threading.Thread(target=read, daemon=True).start()
        # Ready when Triton itself says every model is: not by parsing the output, which tritonserver and
        # the script share (a READY line came out interleaved with a log line once, and was missed).
        import tritonclient.grpc as grpcclient

        graphs = json.loads((Path(model_dir) / "manifest.json").read_text())["graphs"]
        names = [f"{name or Path(model_dir).name}_{g}" for g in graphs]
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.is_server_ready() and all(client.is_model_ready(n) for n in names):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Triton did not start:\n" + "".join(self.log[-40:]))
            time.sleep(0.2)
        client.close()

    def inference_count(self, model: str) -> float:
        """Successful inference requests of one model, from Triton's own Prometheus metrics."""
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("nv_inference_request_success{") and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        """SIGKILL to the server's process group (tritonserver and its backend stubs): a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, OSError):
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)

    def __enter__(self) -> "TritonServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["TritonServer", "triton_python"]
