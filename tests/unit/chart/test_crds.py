"""The chart ships the same generated CRDs as crds/ (Helm installs charts/gpufleet/crds/ as-is)."""

from __future__ import annotations

from tests.unit.chart.helpers import CHART, ROOT


def test_chart_crds_are_identical_to_the_generated_ones() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty: run `gpufleet crds`"
    assert sorted(shipped) == sorted(generated), "run: gpufleet crds --out charts/gpufleet/crds --docs -"
    for name, text in generated.items():
        assert shipped[name] == text, (
            f"charts/gpufleet/crds/{name} is stale: run gpufleet crds --out charts/gpufleet/crds --docs -"
        )


def test_chart_crds_are_not_templates() -> None:
    # Templated CRDs would be deleted with the release (and every InferenceNode with them).
    assert not list((CHART / "templates").glob("*crd*"))
