"""Print the operator image's requirements: gpufleet's dependencies minus the node agent's own.

The image installs these, then gpufleet itself with ``--no-deps``, so it carries only what
``gpufleet run`` imports. Read from pyproject.toml (not a copy of it) so the two never drift;
tests/unit/operator_image/test_dockerfile.py builds a venv the same way and runs the entrypoint.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: Base dependencies only the node agent uses (NVML is read on GPU nodes, never by the operator).
NODE_ONLY = frozenset({"nvidia-ml-py"})


def operator_requirements(pyproject: Path) -> list[str]:
    """The ``[project] dependencies`` the operator needs, as pip requirement lines."""
    data = tomllib.loads(pyproject.read_text())
    out = []
    for requirement in data["project"]["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match is None:
            raise ValueError(f"cannot read requirement {requirement!r}")
        if match.group(1).lower().replace("_", "-") not in NODE_ONLY:
            out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("pyproject.toml")
    sys.stdout.write("".join(f"{r}\n" for r in operator_requirements(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
