"""The command line as a user meets it: help, errors without tracebacks, the simulate command."""
import subprocess
import sys

import pytest

from edge.cli import main

COMMANDS = ["simulate", "train", "export", "evaluate"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = _run(command, "--help")
    assert r.returncode == 0 and "usage: edge-xai " + command in r.stdout


def test_top_level_help_lists_commands():
    r = _run("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)


def test_simulate_writes_a_dataset(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "d"), "--n", "6", "--seed", "2", "--size", "32", "--quiet"]) == 0
    assert len(list((tmp_path / "d").glob("*/*.npz"))) == 6
    assert "wrote 6 samples" in capsys.readouterr().out


def test_simulate_refuses_a_used_folder_with_a_clear_message(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    r = _run("simulate", "--out", str(tmp_path / "d"), "--n", "3")
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_names_a_missing_model_folder(tmp_path):
    r = _run("evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path))
    assert r.returncode == 2 and "no manifest" in r.stderr
