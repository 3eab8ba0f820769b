"""The shared command-line pieces of dcae/cli/options.py: one error exit, one --device check."""
from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from dcae.cli.options import fail
from tests.conftest import REPO

ROOT = REPO
COMMAND_MODULES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "dcae" / "cli").glob("*.py") if p.name != "options.py") + [
    "inference.py", "train.py", "evaluation/modes.py", "evaluation/reconstruct.py", "tts/two_stage.py"]


def test_fail_prints_one_error_line_and_exits_2():
    @click.command()
    def cmd():
        fail("x.wav: broken")

    result = CliRunner().invoke(cmd, [])
    assert result.exit_code == 2
    assert result.output == "error: x.wav: broken\n"


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_commands_exit_through_the_one_helper(module):
    """No command keeps its own copy of the usage-error exit (``sys.exit(2)`` or a private ``_fail``)."""
    source = (ROOT / module).read_text()
    assert "sys.exit(2)" not in source
    assert not re.search(r"^def _?fail\(", source, re.MULTILINE)


def _commands_with_device():
    """Every ``dcae`` subcommand that takes --device, with the option object."""
    import importlib

    from dcae.cli import SUBCOMMANDS

    found = []
    for name, (module, attr, _) in sorted(SUBCOMMANDS.items()):
        command = getattr(importlib.import_module(module), attr)
        found += [(name, command, p) for p in command.params if "--device" in p.opts]
    return found


def test_every_device_flag_is_checked():
    from dcae.cli.options import _check_device

    commands = _commands_with_device()
    names = {name for name, _, _ in commands}
    assert names >= {"reconstruct", "encode", "decode", "evaluate", "export", "tts", "tokens"}
    for name, _, param in commands:
        assert param.callback is _check_device, name


@pytest.mark.parametrize("device, reason", [
    ("gpu", "--device gpu: not a device (want cpu, cuda, cuda:N or mps)"),
    ("cuda:x", "--device cuda:x: not a device (want cpu, cuda, cuda:N or mps)"),
    ("cuda", "--device cuda: no CUDA GPU available"),
    ("cuda:1", "--device cuda:1: no CUDA GPU available"),
    ("meta", "--device meta: the commands run on cpu, cuda or mps, not meta"),
])
@pytest.mark.parametrize("name", ["reconstruct", "encode", "decode", "evaluate", "export", "tts", "tokens"])
def test_bad_device_is_one_line_exit_2(name, device, reason, monkeypatch, tmp_path):
    """A mistyped or absent device ends the command with one line before anything is loaded."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    command = next(c for n, c, _ in _commands_with_device() if n == name)
    result = CliRunner().invoke(command, ["--device", device])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {reason}"), result.output


def test_device_check_accepts_usable_devices():
    from dcae.cli.options import _check_device

    assert _check_device(None, None, "cpu") == "cpu"
    assert _check_device(None, None, "auto") is None
    assert _check_device(None, None, None) is None
