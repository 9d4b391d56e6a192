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
    proof = sub.add_parser(
        "proof", help="print a pool's reward-tree leaf and merkle proof for a closed Epoch (JSON)"
    )
    proof.add_argument("--epoch", type=int, required=True, help="epoch number")
    proof.add_argument("--pool", required=True, help="OperatorPool as namespace/name (or name in default)")
    _source_args(proof)
    proof.set_defaults(func=_proof)
    verify = sub.add_parser(
        "verify",
        help="check closed Epochs: rewards + undistributed = emission, roots rebuilt from the lines, "
        "every pool's proof",
    )
    verify.add_argument("--epoch", type=int, action="append", help="only these epochs (repeatable)")
    _source_args(verify)
    verify.set_defaults(func=_verify)
    parser.set_defaults(func=lambda args: _usage(parser))


def _source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--file", action="append", help="read Epoch objects from YAML files instead of the cluster"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")


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


def _load_epochs(args: argparse.Namespace, numbers: list[int] | None) -> list[dict[str, Any]]:
    """Epoch objects from files, or from the cluster of the kubeconfig."""
    import os

    import yaml

    if args.file:
        docs: list[dict[str, Any]] = []
        for path in args.file:
            with open(path, encoding="utf-8") as f:
                docs += [d for d in yaml.safe_load_all(f) if isinstance(d, dict) and d.get("kind") == "Epoch"]
    else:
        import asyncio

        from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig

        path = args.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")

        async def fetch() -> list[dict[str, Any]]:
            async with KubeClient(connection_from_kubeconfig(path)) as client:
                _, body = await client.request("GET", "/apis/gpufleet.io/v1alpha1/epochs", what="epochs")
                return [dict(item) for item in (body or {}).get("items", [])]

        docs = asyncio.run(fetch())
    for doc in docs:
        doc.setdefault("apiVersion", "gpufleet.io/v1alpha1")
        doc.setdefault("kind", "Epoch")
    if numbers:
        docs = [d for d in docs if (d.get("spec") or {}).get("number") in numbers]
    return sorted(docs, key=lambda d: int((d.get("spec") or {}).get("number", 0)))


def _proof(args: argparse.Namespace) -> int:
    from gpufleet.controllers.epoch.plan import proof_document, read_epoch

    try:
        docs = _load_epochs(args, [args.epoch])
    except Exception as exc:  # a CLI reports any failure to read in one line
        print(f"cannot read epochs: {exc}", file=sys.stderr)
        return 1
    if not docs:
        print(f"epoch {args.epoch} is not closed (no Epoch object)", file=sys.stderr)
        return 1
    pool = args.pool if "/" in args.pool else f"default/{args.pool}"
    try:
        doc = proof_document(read_epoch(docs[0]), pool)
    except KeyError as exc:
        print(str(exc).strip("'\""), file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2))
    return 0 if doc["verified"] else 1


def _verify(args: argparse.Namespace) -> int:
    from gpufleet.controllers.epoch.plan import read_epoch
    from gpufleet.economics.units import format_int

    try:
        docs = _load_epochs(args, args.epoch)
    except Exception as exc:  # a CLI reports any failure to read in one line
        print(f"cannot read epochs: {exc}", file=sys.stderr)
        return 1
    if not docs:
        print("no closed epochs to verify", file=sys.stderr)
        return 1
    bad = 0
    for doc in docs:
        record = read_epoch(doc)
        problems = record.problems()
        paid = sum(line.reward for line in record.lines)
        verdict = "ok" if not problems else "FAILED"
        print(
            f"epoch {record.number}: {verdict}: {format_int(paid)} of {format_int(record.emission)} INT to "
            f"{len(record.lines)} pools, {len(record.roots)} root(s), {len(record.lines)} proofs checked"
        )
        for problem in problems:
            print(f"  {problem}")
        bad += bool(problems)
    return 1 if bad else 0
