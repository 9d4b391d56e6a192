"""Without a source checkout the emulator installs CRDs generated from the models: the same ones."""

from __future__ import annotations

from gpufleet_devcluster.cluster import DEFAULT_CRD_DIR, generated_crds, load_crds


def test_generated_crds_equal_the_checked_in_files() -> None:
    on_disk = {c["metadata"]["name"]: c for c in load_crds(DEFAULT_CRD_DIR)}
    generated = {c["metadata"]["name"]: c for c in generated_crds()}
    assert set(generated) == set(on_disk) == {
        "inferencenodes.gpufleet.io",
        "operatorpools.gpufleet.io",
        "enginereleases.gpufleet.io",
        "penalties.gpufleet.io",
        "routingpolicies.gpufleet.io",
        "epochs.gpufleet.io",
        "pointsawards.gpufleet.io",
    }
    for name, crd in generated.items():
        assert crd == on_disk[name], name
