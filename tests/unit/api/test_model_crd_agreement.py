"""Differential check: for generated inputs, the CRD (schema + CEL) and the models accept and
refuse exactly the same objects. This is what keeps the two copies of each rule honest.

One known, deliberate difference is left out: the API server accepts an integral float (``100.0``)
for an integer field and so does ``validate_object``; the strict models refuse it.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpufleet.api.crdgen import load_crds
from gpufleet.api.quantity import INT_AMOUNT_PATTERN
from gpufleet.api.v1alpha1 import EngineRelease, InferenceNode, OperatorPool
from gpufleet.api.validation import compile_crd, validate_object
from tests.unit.api.conftest import CRD_DIR, example

CRDS = load_crds(CRD_DIR)
for _crd in CRDS.values():
    compile_crd(_crd)  # compile (and let cel-python set its recursion limit) outside the tests
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

amounts = st.one_of(
    st.from_regex(INT_AMOUNT_PATTERN, fullmatch=True),
    st.text(alphabet="0123456789.-+eE, ", max_size=30),
    st.integers(min_value=-5, max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
)
ints = st.one_of(
    st.integers(min_value=-20_000, max_value=20_000), st.text(max_size=4), st.booleans(), st.none()
)


def _agree(model: Any, crd: dict[str, Any], obj: dict[str, Any]) -> None:
    crd_ok = validate_object(crd, obj) == []
    try:
        model.model_validate(obj)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert crd_ok == model_ok, f"CRD accepts: {crd_ok}, model accepts: {model_ok} for {obj['spec']}"


def _set(obj: dict[str, Any], field: str, value: Any) -> None:
    if value is None:
        obj["spec"].pop(field, None)
    else:
        obj["spec"][field] = value


@SETTINGS
@given(self_stake=amounts, delegated=amounts, commission=ints, reputation=st.one_of(amounts, st.none()))
def test_operator_pool(self_stake: Any, delegated: Any, commission: Any, reputation: Any) -> None:
    obj = copy.deepcopy(example("operator-a"))
    _set(obj, "selfStake", self_stake)
    _set(obj, "delegatedStake", delegated)
    _set(obj, "commissionBps", commission)
    _set(obj, "reputationWeight", reputation)
    _agree(OperatorPool, CRDS["OperatorPool"], obj)


@SETTINGS
@given(
    max_unavailable=st.one_of(
        st.integers(min_value=-2, max_value=2000),
        st.from_regex(r"^-?[0-9]{1,4}%?$", fullmatch=True),
        st.floats(),
    ),
    deadline=ints,
    min_ready=ints,
    channel=st.one_of(st.none(), st.sampled_from(["stable", "candidate", "nightly", "beta", ""])),
    version=st.one_of(st.none(), st.sampled_from(["1.2.3", "1.2", "v1.2.3", "1.0.0-rc.1", "01.2.3"])),
    gpu_count=ints,
)
def test_inference_node(
    max_unavailable: Any, deadline: Any, min_ready: Any, channel: Any, version: Any, gpu_count: Any
) -> None:
    obj = copy.deepcopy(example("rtx4090-box"))
    policy: dict[str, Any] = {"maxUnavailable": max_unavailable}
    if deadline is not None:
        policy["progressDeadlineSeconds"] = deadline
    if min_ready is not None:
        policy["minReadySeconds"] = min_ready
    obj["spec"]["updatePolicy"] = policy
    obj["spec"]["release"] = {k: v for k, v in (("channel", channel), ("version", version)) if v is not None}
    _set(obj, "gpuCount", gpu_count)
    _agree(InferenceNode, CRDS["InferenceNode"], obj)


@SETTINGS
@given(
    engines=st.lists(st.sampled_from(["vllm", "sglang", "tgi"]), max_size=3),
    vllm=st.one_of(st.none(), st.just("0.11.0")),
    sglang=st.one_of(st.none(), st.just("0.5.3"), st.just("five")),
)
def test_engine_release(engines: list[str], vllm: str | None, sglang: str | None) -> None:
    obj = copy.deepcopy(example("engine-1.4.2"))
    obj["spec"]["engines"] = engines
    versions = {k: v for k, v in (("vllm", vllm), ("sglang", sglang)) if v is not None}
    if versions:
        obj["spec"]["engineVersions"] = versions
    else:
        del obj["spec"]["engineVersions"]
    _agree(EngineRelease, CRDS["EngineRelease"], obj)
