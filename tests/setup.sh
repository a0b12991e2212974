#!/usr/bin/env bash
# Everything the tests need, on a fresh machine: the package with its dev extra, pytorch-grad-cam
# without its torchvision requirement (which would pull a multi-GB CUDA torch; see tests/helpers/reference_libs.py),
# Debian's chromium for the HMI browser test (Playwright drives it; no browser download), and Debian's
# PostgreSQL server for the plant-record tests (tests/helpers/postgres.py starts a throwaway one).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e '.[dev]'
pip install -q --no-deps grad-cam==1.5.7
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
apt_install() {
  $sudo apt-get install -y -q "$@" >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi
# A real Triton Inference Server for the `triton` engine's tests: PyPI's nvidia-pytriton bundles tritonserver.
# Its own virtual environment: it pins numpy < 2 and tritonclient[grpc]'s protobuf, which conflict with ours.
if [ ! -x .venv-triton/bin/python ] && [ "$(uname -m)" = x86_64 ]; then
  python -m venv .venv-triton
  .venv-triton/bin/pip install -q 'nvidia-pytriton==0.7.0' onnxruntime \
    || echo "tests/setup.sh: nvidia-pytriton did not install; the Triton engine tests will skip" >&2
fi
# A second, independent OPC UA client for the results test (tests/line/opcua_client.js): node-opcua.
if command -v npm >/dev/null 2>&1 && [ ! -d .node-opcua/node_modules/node-opcua-client ]; then
  mkdir -p .node-opcua
  (cd .node-opcua && npm install --silent --no-audit --no-fund node-opcua-client@2.186.4 >/dev/null) \
    || echo "tests/setup.sh: node-opcua-client did not install; its OPC UA test will skip" >&2
fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql
fi
