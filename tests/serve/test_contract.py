"""The committed gRPC code is what the .proto generates (one way of generating it: committed + this test)."""
import subprocess
import sys

from helpers import ROOT


def test_generated_code_is_current():
    r = subprocess.run([sys.executable, "-m", "edge.serve.codegen", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_service_has_every_rpc_of_the_issue():
    from edge.v1 import inspection_pb2 as pb

    rpcs = set(pb.DESCRIPTOR.services_by_name["Inspection"].methods_by_name)
    assert rpcs == {"Inspect", "InspectStream", "GetInspection", "WatchInspections", "SubmitVerdict", "ListModels",
                    "GetModelInfo"}
    stream = pb.DESCRIPTOR.services_by_name["Inspection"].methods_by_name["InspectStream"]
    assert stream.client_streaming and stream.server_streaming
