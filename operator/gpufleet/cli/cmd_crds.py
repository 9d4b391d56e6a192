"""`gpufleet crds`: generate the CRDs and the CRD reference from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="generate CRDs (crds/*.yaml) and docs/crd-reference.md from the API models",
        description="Generate the CustomResourceDefinitions and the CRD reference from the pydantic "
        "models in gpufleet.api.v1alpha1. With --check, write nothing and fail when the files drift.",
    )
    parser.add_argument("--out", type=Path, default=Path("crds"), help="CRD directory (default: crds)")
    parser.add_argument(
        "--docs",
        type=Path,
        default=Path("docs/crd-reference.md"),
        help="CRD reference page (default: docs/crd-reference.md); '-' to skip",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=Path("charts/gpufleet/crds"),
        help="the Helm chart's copy of the CRDs, kept identical (default: charts/gpufleet/crds); '-' to skip",
    )
    parser.add_argument("--check", action="store_true", help="only check that the files are current")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gpufleet.api import crdgen, docgen

    docs: Path | None = None if str(args.docs) == "-" else args.docs
    chart: Path | None = None if str(args.chart) == "-" else args.chart
    if args.check:
        problems = crdgen.check(args.out)
        if chart is not None:
            problems += crdgen.check(chart)
        if docs is not None:
            if not docs.exists():
                problems.append(f"{docs}: missing")
            elif docs.read_text() != docgen.render_reference():
                problems.append(f"{docs}: differs from the models")
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `gpufleet crds` to regenerate", file=sys.stderr)
            return 1
        print(f"{args.out}/ is up to date with the models")
        return 0
    for path in crdgen.write(args.out):
        print(f"wrote {path}")
    if chart is not None:
        for path in crdgen.write(chart):
            print(f"wrote {path}")
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(docgen.render_reference())
        print(f"wrote {docs}")
    return 0
