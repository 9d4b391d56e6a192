"""Repository hygiene that CI depends on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_install_and_test_commands() -> None:
    commands = _readme_commands()
    assert len(commands) >= 2
    assert "pip install" in commands[0]
    assert "gpufleet demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = _readme_commands()[1]
    assert test_command in ci, ".ci/run must run the README's test command verbatim"


def test_no_init_py_directly_in_operator_dir() -> None:
    # It would shadow Python's stdlib `operator` module.
    assert not (ROOT / "operator" / "__init__.py").exists()
