"""The shared command-line pieces of dcae/cli_options.py: one error exit, one --device check."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dcae.cli_options import fail

ROOT = Path(__file__).resolve().parents[1]
COMMAND_MODULES = ["inference.py", "export.py", "evaluation/cli.py", "tts/cli.py", "tts/tokens_cli.py",
                   "tts/token_command.py", "tts/lm_command.py", "evaluation/reconstruct.py"]


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
