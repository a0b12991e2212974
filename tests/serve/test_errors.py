"""Errors become gRPC status codes in one place: the project's errors by kind, anything else INTERNAL."""
import grpc
import pytest

from edge.errors import DeadlineExceeded, EdgeError, InvalidInput, NotFound, Refused, Saturated, Unavailable
from edge.serve.batcher import QueueFull, ShuttingDown
from edge.serve.frames import FieldError
from edge.serve.inspector import UnknownName
from edge.serve.servicer import status_for


@pytest.mark.parametrize("exc, code", [
    (FieldError("frame.channels[0]", "has no data"), grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidInput("target 'x'"), grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownName("model 'resnet': not served here"), grpc.StatusCode.NOT_FOUND),
    (NotFound("inspection_id 'x': no such inspection"), grpc.StatusCode.NOT_FOUND),
    (ShuttingDown("stopping"), grpc.StatusCode.UNAVAILABLE),
    (Unavailable("no pycuda"), grpc.StatusCode.UNAVAILABLE),
    (QueueFull("64 waiting"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Saturated("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceeded("budget spent"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (Refused("no audited model"), grpc.StatusCode.PERMISSION_DENIED),
    (EdgeError("other"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_project_errors_keep_their_message_and_kind(exc, code):
    got, message = status_for(exc)
    assert got == code and message == str(exc)


@pytest.mark.parametrize("bug", [ValueError("operands could not be broadcast"), KeyError("heatmap"),
                                 TimeoutError("lock"), RuntimeError("boom")])
def test_other_exceptions_are_bugs_reported_as_internal_without_their_text(bug):
    code, message = status_for(bug)
    assert code == grpc.StatusCode.INTERNAL
    assert type(bug).__name__ in message and str(bug).strip("'") not in message
