"""The log configuration of `gpufleet run`: kopf's bookkeeping demoted, objects named, JSON valid."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gpufleet.cli.logformat import configure_logging

REF = {"apiVersion": "gpufleet.io/v1alpha1", "kind": "InferenceNode", "namespace": "fleet", "name": "box"}


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _emit(level: int, fmt: str) -> str:
    out = io.StringIO()
    configure_logging(level, fmt, out)  # type: ignore[arg-type]
    kopf = logging.getLogger("kopf.objects")
    kopf.info("Handler 'make_registry.<locals>.inode_event' succeeded.", extra={"k8s_ref": REF})
    kopf.info("Updating is processed: 1 succeeded; 0 failed.", extra={"k8s_ref": REF})
    logging.getLogger("gpufleet.rollout").info("InferenceNode fleet/box: RolloutStarted: 1.0.0 -> 1.1.0")
    kopf.warning("Patching failed with inconsistencies", extra={"k8s_ref": REF})
    return out.getvalue()


@pytest.mark.usefixtures("restore_root")
def test_info_keeps_transitions_and_drops_kopf_bookkeeping() -> None:
    lines = _emit(logging.INFO, "text").splitlines()
    assert len(lines) == 2, lines
    assert "RolloutStarted" in lines[0]
    assert " INFO gpufleet.rollout: " in lines[0]
    assert "WARNING kopf.objects: [InferenceNode fleet/box] Patching failed" in lines[1]


@pytest.mark.usefixtures("restore_root")
def test_verbose_shows_the_bookkeeping_as_debug() -> None:
    lines = _emit(logging.DEBUG, "text").splitlines()
    assert len(lines) == 4
    assert " DEBUG kopf.objects: [InferenceNode fleet/box] Handler " in lines[0]


@pytest.mark.usefixtures("restore_root")
def test_json_is_one_object_per_line_with_the_object() -> None:
    docs = [json.loads(line) for line in _emit(logging.INFO, "json").splitlines()]
    assert [d["level"] for d in docs] == ["INFO", "WARNING"]
    assert docs[1]["object"] == {"kind": "InferenceNode", "namespace": "fleet", "name": "box"}
    assert docs[0]["logger"] == "gpufleet.rollout"
    assert docs[0]["time"].endswith("+00:00")


@pytest.mark.usefixtures("restore_root")
def test_levels_left_by_an_earlier_caller_do_not_hide_transitions() -> None:
    # What `gpufleet demo` and the rollout test harness leave behind in the same process.
    for name in ("kopf", "gpufleet", "gpufleet.rollout", "kopf.objects"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    lines = _emit(logging.INFO, "text").splitlines()
    assert len(lines) == 2, lines
    assert "RolloutStarted" in lines[0]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_logging(logging.INFO, "xml", io.StringIO())  # type: ignore[arg-type]
