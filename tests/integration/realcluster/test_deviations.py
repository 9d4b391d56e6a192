"""Where the emulator answered differently from kube-apiserver (issue #13's corpus), checked on both.

Each test states the real server's answer (observed on kube-apiserver 1.36.3 built here) and
asserts that both backends give it, through the same `kubernetes` client calls.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from tests.integration.realcluster.conftest import Backend

POOLS = ("gpufleet.io", "v1alpha1")
WIDGETS = ("example.com", "v1")


def _post(b: Backend, path: str, body: dict[str, Any], query: str = "") -> tuple[int, dict[str, Any]]:
    """Raw POST, so the body reaches the server byte for byte (no client-side model)."""
    resp = b.api.rest_client.pool_manager.request(
        "POST",
        f"{b.api.configuration.host}{path}{query}",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        data: dict[str, Any] = json.loads(resp.data)
    except json.JSONDecodeError:  # "404 page not found" while a new CRD is not served yet
        data = {"message": resp.data.decode(errors="replace")}
    return resp.status, data


def _pool(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "OperatorPool",
        "metadata": {"name": name},
        "spec": {"selfStake": "100000", "delegatedStake": "0", "commissionBps": 500, **spec},
    }


def _widget(name: str, meta: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, **(meta or {})},
        "spec": {"size": 1, **spec},
    }


def _pools_path(b: Backend) -> str:
    return f"/apis/gpufleet.io/v1alpha1/namespaces/{b.namespace}/operatorpools"


def _widgets_path(b: Backend) -> str:
    return f"/apis/example.com/v1/namespaces/{b.namespace}/widgets"


def test_pattern_dollar_does_not_accept_a_trailing_newline(cluster: Backend) -> None:
    # Go regexp: `$` matches only at the end of the text (Python's re also before a final "\n").
    code, body = _post(cluster, _pools_path(cluster), _pool("p", selfStake="100000\n"))
    assert code == 422, body
    assert "spec.selfStake" in body["message"]


def test_integral_float_is_stored_as_an_integer(cluster: Backend) -> None:
    # kube-apiserver decodes 500.0 for an integer field and stores 500.
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", size=500.0))
    assert code == 201, body
    assert body["spec"]["size"] == 500
    assert isinstance(body["spec"]["size"], int)
    assert "500.0" not in json.dumps(body)


def test_integer_beyond_int64_is_refused_naming_the_field(cluster: Backend) -> None:
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", size=2**70))
    assert code == 422, body
    assert "spec.size" in body["message"]
    assert "integer" in body["message"]


def test_null_in_a_defaulted_field_is_defaulted(cluster: Backend) -> None:
    # Since 1.20 a null for a non-nullable field with a default is pruned, then defaulted.
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", color=None))
    assert code == 201, body
    assert body["spec"]["color"] == "red"


def test_label_value_longer_than_63_characters_is_refused(cluster: Backend) -> None:
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", {"labels": {"a": "x" * 64}}))
    assert code == 422, body
    assert "metadata.labels" in body["message"]
    assert "63" in body["message"]


def test_label_value_with_bad_characters_is_refused(cluster: Backend) -> None:
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", {"labels": {"a": "-x"}}))
    assert code == 422, body
    assert "metadata.labels" in body["message"]


def test_custom_resource_name_may_be_a_long_dns_subdomain(cluster: Backend) -> None:
    code, body = _post(cluster, _widgets_path(cluster), _widget("w" * 200))
    assert code == 201, body
    code, body = _post(cluster, _widgets_path(cluster), _widget("w" * 254))
    assert code == 422, body
    assert "metadata.name" in body["message"]


def test_strict_field_validation_is_400_naming_the_field(cluster: Backend) -> None:
    code, body = _post(cluster, _widgets_path(cluster), _widget("w", bogus="x"), "?fieldValidation=Strict")
    assert code == 400, body
    assert body["reason"] == "BadRequest"
    assert 'unknown field "spec.bogus"' in body["message"]


def test_server_side_dry_run_validates_and_stores_nothing(cluster: Backend) -> None:
    code, body = _post(cluster, _pools_path(cluster), _pool("p"), "?dryRun=All")
    assert code == 201, body
    with pytest.raises(client.ApiException) as err:
        cluster.custom.get_namespaced_custom_object(*POOLS, cluster.namespace, "operatorpools", "p")
    assert err.value.status == 404
    code, body = _post(cluster, _pools_path(cluster), _pool("p", commissionBps=-1), "?dryRun=All")
    assert code == 422, body
    assert "spec.commissionBps" in body["message"]


@pytest.mark.parametrize("value", ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z"])
def test_impossible_date_time_is_refused(cluster: Backend, value: str) -> None:
    # kube-apiserver 1.36.3: "spec.at in body must be of type date-time" (422) for an impossible
    # date or time; the emulator's fast path checked only the shape and accepted them.
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clocks.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Clock", "plural": "clocks"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"at": {"type": "string", "format": "date-time"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(cluster.api)
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    path = f"/apis/example.com/v1/namespaces/{cluster.namespace}/clocks"
    obj = {"apiVersion": "example.com/v1", "kind": "Clock", "metadata": {"name": "c"}, "spec": {"at": value}}
    code, body = 404, {}
    for _ in range(100):  # the new CRD is served within a moment
        code, body = _post(cluster, path, obj)
        if code != 404:
            break
        time.sleep(0.1)
    assert code == 422, json.dumps(body)[:600]
    assert "spec.at" in body["message"]
