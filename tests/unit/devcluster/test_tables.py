"""Server-side printing (`kubectl get` Tables) and the printer-column JSONPath subset."""

from __future__ import annotations

from gpufleet_devcluster.resources import builtin_types, types_from_crd
from gpufleet_devcluster.tables import jsonpath, table

OBJ = {
    "metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "status": {
        "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}],
        "devices": [{"i": 0}, {"i": 1}],
        "nested": {"x": {"y": 3}},
    },
}


def test_jsonpath_subset() -> None:
    assert jsonpath(OBJ, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(OBJ, ".status.devices[*].i") == [0, 1]
    assert jsonpath(OBJ, ".status.devices[1].i") == [1]
    assert jsonpath(OBJ, ".status.nested.x.y") == [3]
    assert jsonpath(OBJ, ".status.missing") == []
    assert jsonpath(OBJ, "{.metadata.name}") == ["n"]


def test_crd_table_uses_printer_columns_and_ages_dates() -> None:
    crd = {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Devices", "type": "integer", "jsonPath": ".status.devices[*].i"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }
    rtype = types_from_crd(crd)[0]
    out = table(rtype, [OBJ], "7")
    assert [c["name"] for c in out["columnDefinitions"]] == ["Name", "Ready", "Devices", "Age"]
    cells = out["rows"][0]["cells"]
    assert cells[:3] == ["n", "True", "0,1"]
    assert cells[3].endswith("d")  # created in January: days ago
    assert out["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_pod_table_shows_ready_and_status() -> None:
    pods = next(t for t in builtin_types() if t.plural == "pods")
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "gpu-0"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [
                {"ready": True, "restartCount": 2, "state": {"running": {}}},
                {"ready": False, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ],
        },
    }
    cells = table(pods, [pod], "1")["rows"][0]["cells"]
    assert cells[:4] == ["p", "1/2", "CrashLoopBackOff", 3]
    assert cells[5:] == ["10.0.0.1", "gpu-0", "<none>", "<none>"]  # no nominated node, no readiness gates
