"""The command line lists every command with a one-line description."""

from __future__ import annotations

import pytest

from gpufleet.cli import build_parser, main


def test_help_lists_commands_with_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert actions, "no sub-command group"
    choices = actions[0].choices
    assert choices is not None
    for name in choices:
        assert name in out
    for action in actions[0]._choices_actions:
        assert action.help, f"command {action.dest} has no one-line description"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
