"""Reading a TOML settings file with errors that name it (tomllib on 3.11+, tomli on JetPack's 3.10)."""
from __future__ import annotations

import sys
from pathlib import Path

from edge.errors import InvalidInput, MissingFile

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def read_toml(path: Path, what: str) -> dict:
    """The file's contents; `what` names it in errors ("config", "--policy")."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingFile(f"{what} {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{what} {path}: not valid TOML ({e})") from e
