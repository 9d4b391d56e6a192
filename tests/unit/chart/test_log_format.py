"""operator.logFormat reaches the operator as GPUFLEET_LOG_FORMAT, with values the operator accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gpufleet.settings import OperatorSettings
from tests.unit.chart.helpers import CHART, objects, one


def _log_env(values: dict[str, object] | None = None) -> dict[str, str]:
    pod = one(objects(values), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return {e["name"]: e.get("value") for e in container["env"] if e["name"].startswith("GPUFLEET_LOG_")}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_format_is_passed_and_accepted_by_the_operator(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _log_env({"operator": {"logFormat": fmt}})
    assert env["GPUFLEET_LOG_FORMAT"] == fmt
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert OperatorSettings().log_format == fmt


def test_default_is_text_and_unknown_formats_are_refused() -> None:
    assert _log_env()["GPUFLEET_LOG_FORMAT"] == "text"
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="xml"):
        jsonschema.validate({"operator": {"logFormat": "xml"}}, schema)
