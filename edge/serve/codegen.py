"""Generate the gRPC Python code from proto/edge/v1/inspection.proto into edge/v1/.

    python -m edge.serve.codegen            # regenerate (needs grpcio-tools, a dev dependency)
    python -m edge.serve.codegen --check    # exit 1 if the committed code is stale

The code is committed so that installing edge-xai needs no protoc; tests run --check.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("edge/v1/inspection.proto")
OUTPUTS = ("inspection_pb2.py", "inspection_pb2.pyi", "inspection_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", str(ROOT / "proto" / PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        generate(Path(d))
        stale = []
        for name in OUTPUTS:
            new = (Path(d) / "edge" / "v1" / name).read_bytes()
            committed = ROOT / "edge" / "v1" / name
            if args.check:
                if not committed.is_file() or committed.read_bytes() != new:
                    stale.append(str(committed.relative_to(ROOT)))
            else:
                committed.parent.mkdir(parents=True, exist_ok=True)
                committed.write_bytes(new)
    if stale:
        print(f"stale generated code: {', '.join(stale)}; run python -m edge.serve.codegen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
