"""Output folders that appear whole or not at all.

    with staged_output(out, "--out") as work:     # work: a folder named like OUT, in a hidden folder beside it
        ...write everything into work...
    # OUT now holds it; an exception or Ctrl-C inside the block leaves OUT as it was and removes work

Why: a model folder, a simulated data set or a data set written from the store is read later by tools that
trust it (`serve` loads a model folder, `train` a data set). Written in place, a run stopped halfway (Ctrl-C,
an error at sample 2113 of 3000, an export that fails) left a folder that looks finished: a model folder with
weights and a manifest but no graphs, a data set with a truncated last file and without its recipe, which
training then read as another set. Written beside OUT and renamed when complete (one rename on the same file
system), OUT is either absent or whole; a run killed outright (SIGKILL, power) leaves only a hidden
`.OUT.partial-*` folder beside it, never something under OUT's name. An OUT that exists already (empty,
perhaps the shell's current folder, `--out .`) is kept as the same folder and the finished entries are
renamed into it one by one: whole entries, in a window of microseconds instead of the whole run.

`work` carries OUT's own name (it sits one level down in the hidden folder), so whatever records its
folder's name (a model's manifest `name`) records OUT's. A caller that must keep an incomplete result (the
trained weights when only the export failed) publishes it with `keep_on`.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edge.errors import OutputExists


def check_output(out: Path, option: str = "--out") -> Path:
    """OUT as a Path, refused when it exists and is not empty (nothing of the user's is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExists(f"{option} {out} exists and is not empty; choose a new folder")
    return out


@contextmanager
def staged_output(out: Path, option: str = "--out", keep_on: tuple[type[BaseException], ...] = (),
                  publish_empty: bool = True) -> Iterator[Path]:
    """Yield the folder to write OUT's content into; on leaving the block without an exception it becomes
    OUT. An exception removes it and leaves OUT untouched, except one of `keep_on`, which publishes what
    was written before re-raising. publish_empty=False: nothing written means OUT is not created."""
    out = check_output(out, option)
    where = out.resolve()                  # `--out .` (an empty current folder) has a name and a parent too
    where.parent.mkdir(parents=True, exist_ok=True)
    # unique and hidden: never a name the user chose, so removing it can take nothing of theirs
    holder = Path(tempfile.mkdtemp(prefix=f".{where.name}.partial-", dir=where.parent))
    work = holder / where.name
    work.mkdir()
    try:
        yield work
    except keep_on:
        try:
            _publish(work, out, option)
        finally:
            shutil.rmtree(holder, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise
    try:
        if publish_empty or any(work.iterdir()):
            _publish(work, out, option)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _publish(work: Path, out: Path, option: str) -> None:
    # OUT may have appeared meanwhile (another run): refuse rather than merge into it
    check_output(out, option)
    if out.exists():
        # an existing empty folder stays the same folder (it may be a shell's current directory): the
        # entries are renamed into it, each whole
        for entry in sorted(work.iterdir()):
            entry.rename(out / entry.name)
    else:
        work.rename(out)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path` through, whole or not at all: written beside it and renamed over it
    on leaving the block, so a crash or Ctrl-C mid-write leaves the old file (or none), never half of one
    that a later reader trusts."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> Path:
    """`atomic_file` for a text file (UTF-8)."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))
    return Path(path)
