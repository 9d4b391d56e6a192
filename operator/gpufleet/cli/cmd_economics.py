"""``gpufleet economics``: replay staking scenarios against the exact model of the program."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "economics", help="replay staking scenarios (pools, stake, rewards, slashing) exactly"
    )
    sub = parser.add_subparsers(dest="economics_command", metavar="ACTION")
    replay = sub.add_parser("replay", help="replay scenario YAML files and print the state after each step")
    replay.add_argument("files", nargs="+", help="scenario files (see examples/economics/)")
    replay.add_argument("--json", action="store_true", help="print one JSON document per file")
    replay.set_defaults(func=_replay)
    emissions = sub.add_parser("emissions", help="print the token emission for epochs")
    emissions.add_argument("epochs", nargs="+", type=int, help="epoch numbers (from 1)")
    emissions.set_defaults(func=_emissions)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _replay(args: argparse.Namespace) -> int:
    from gpufleet.economics.errors import EconomicsError
    from gpufleet.economics.scenario import load_scenario, render_json, render_text, replay

    status = 0
    documents: list[dict[str, Any]] = []
    for path in args.files:
        try:
            scenario = load_scenario(path)
            _, results = replay(scenario)
        except (OSError, EconomicsError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
            continue
        if any(not r.as_expected for r in results):
            status = 1
        if args.json:
            documents.append({"file": path, **render_json(scenario, results)})
        else:
            print(f"== {path}")
            print(render_text(scenario, results))
    if args.json:
        print(json.dumps(documents if len(documents) != 1 else documents[0], indent=2))
    return status


def _emissions(args: argparse.Namespace) -> int:
    from gpufleet.economics.emissions import expected_reward_emissions
    from gpufleet.economics.errors import EconomicsError
    from gpufleet.economics.units import format_int

    try:
        for epoch in args.epochs:
            print(f"epoch {epoch}: {format_int(expected_reward_emissions(epoch))} INT")
    except EconomicsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
