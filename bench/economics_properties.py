"""Nightly-style run of the economics invariants with many more generated scenarios than CI.

Usage: .venv/bin/python bench/economics_properties.py [EXAMPLES_PER_PROPERTY]
       -> bench/results/economics_properties.json
CI runs each property with 500 scenarios (tests/unit/economics/test_properties.py); this runs the
same property functions with EXAMPLES_PER_PROPERTY (default 5000) and records how long each took.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the properties live in the tests package
EXAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
os.environ["GPUFLEET_ECONOMICS_EXAMPLES"] = str(EXAMPLES)

from tests.unit.economics import test_properties as props  # noqa: E402

PROPERTIES = [
    props.test_tokens_are_conserved,
    props.test_holders_never_redeem_more_than_the_pool_holds,
    props.test_rounding_dust_stays_in_the_pool_and_slashing_spares_delegators,
    props.test_epochs_accrue_in_order_exactly_once,
    props.test_halts_block_exactly_the_protocols_operations,
]


def main() -> int:
    examples = EXAMPLES
    results = {}
    failed = False
    for prop in PROPERTIES:
        start = time.perf_counter()
        try:
            prop()
            outcome = "passed"
        except AssertionError as exc:  # a falsifying scenario: report it, keep going
            outcome = f"FAILED: {str(exc).splitlines()[0] if str(exc) else 'assertion'}"
            failed = True
        elapsed = time.perf_counter() - start
        results[prop.__name__] = {"examples": examples, "seconds": round(elapsed, 2), "outcome": outcome}
        print(f"{prop.__name__}: {outcome} ({examples} scenarios, {elapsed:.1f} s)", flush=True)
    out = {
        "benchmark": "economics_properties",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "properties": results,
    }
    path = ROOT / "bench" / "results" / "economics_properties.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
