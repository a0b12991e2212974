"""Ctrl-C during training: once stops training early and keeps what it has learnt, twice aborts.

    with StopOnInterrupt() as stop:
        for epoch ...:
            for step ...:
                ...one optimiser step...
                if stop.requested:
                    break                 # close this epoch as usual (validation, checkpoint), then no more

Why: a run on real data takes minutes to a quarter of an hour on a CPU, and its progress lines show when
the validation figures stop improving. A user who has seen enough wants the model now, not an abort that
throws the run away; `--time-budget` says it in advance, this says it while watching. The first Ctrl-C is
caught between optimiser steps (never inside one: the weights are always a whole step's), the epoch under
way is closed like any other (validated, its checkpoint kept) and training goes on to the checkpoint
choice, export, calibration and review flag as usual; the manifest records where it stopped. The handler
is then the usual one again: a second Ctrl-C raises KeyboardInterrupt, and the model folder, written beside
OUT until complete (`edge.output_folder`), is not created.

Only the main thread can catch signals; elsewhere (a library caller's worker thread) Ctrl-C aborts as
Python's default does.
"""
from __future__ import annotations

import signal
import sys
import threading


class StopOnInterrupt:
    """A context in which the first SIGINT sets `requested` instead of raising KeyboardInterrupt."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        # a process started with SIGINT ignored (a background job of a script, nohup) keeps ignoring it
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        if threading.current_thread() is threading.main_thread() and not ignored:
            previous = signal.signal(signal.SIGINT, self._handle)
            # None: a handler set outside Python; Python's own is the closest to restore
            self._previous = previous if previous is not None else signal.default_int_handler
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)          # the next Ctrl-C aborts
        print("\nCtrl-C: training stops after this step; the epoch under way is validated and the model is "
              "finished from the epochs done (checkpoint choice, export, calibration). Ctrl-C again aborts "
              "and writes nothing.", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def stopped_at(epoch: int, steps_done: int, steps: int, epochs_planned: int) -> dict:
    """Where Ctrl-C stopped a run, as the manifest keeps it (`training.stopped`) and `stopped_text` says it."""
    return {"epoch": epoch, "steps_done": steps_done, "steps": steps, "epochs_planned": epochs_planned}


def stopped_text(stopped: dict) -> str:
    """The training log's and manifest's words for where Ctrl-C stopped a run (`FitLog.stopped`)."""
    part = "" if stopped["steps_done"] == stopped["steps"] else (
        f" after {stopped['steps_done']} of its {stopped['steps']} steps")
    return (f"stopped by Ctrl-C in epoch {stopped['epoch']}{part}, of {stopped['epochs_planned']} planned: "
            "the model is what those epochs learnt")
