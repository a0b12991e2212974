"""The project's errors: one base, a few kinds, caught only at the edges.

An `EdgeError` is a problem with what a user, a file or a request supplied (or with the machine's
set-up); its message names the field, option or file at fault and says what would work. The edges
translate it: the CLI prints it as one line and exits 2, the gRPC servicer answers with the kind's
status code, the HMI with the matching HTTP status. Any other exception is a bug and is reported as
one (a traceback in the CLI, INTERNAL plus a logged traceback in the server), so a NumPy broadcasting
error is never dressed up as a user's mistake.

The kinds also derive from the built-in they refine (ValueError, LookupError, ...), so code that
already catches the built-in keeps working.
"""
from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the user can act on."""


class InvalidInput(EdgeError, ValueError):
    """A value that cannot be used: an option, a config setting, an array's shape or content."""


class NotFound(EdgeError, LookupError):
    """Something named that does not exist here: a model, class, graph, inspection or file."""


class Refused(EdgeError, PermissionError):
    """A request that is understood and refused by policy (for example: no audited model to serve)."""


class Unavailable(EdgeError, RuntimeError):
    """The service or a backend cannot do the work now or on this machine (stopping, missing library)."""


class Saturated(EdgeError, RuntimeError):
    """Too much work already waiting; retry after a back-off."""


class DeadlineExceeded(EdgeError, TimeoutError):
    """The cycle budget or the caller's deadline was spent before the work could be done."""


class ExportError(EdgeError, RuntimeError):
    """An exported graph that fails its checks (operators, agreement with autograd)."""


class MissingFile(NotFound, FileNotFoundError):
    """A file or folder the user named that does not exist."""


class OutputExists(EdgeError, FileExistsError):
    """An output folder that already holds something: nothing is overwritten."""
