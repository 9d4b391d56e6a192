"""The demo's scenario: emulated hardware, the manifests to apply, and the releases to roll out.

It is data, not code, so that a user can copy the default scenario, change stakes, GPUs or
releases, and watch what the operator does with them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Behaviour = Literal["ok", "crash_loop", "never_ready", "slow_start", "oom", "image_pull_error"]
Outcome = Literal["Succeeded", "RolledBack", "Halted"]


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with the reason a person can fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmulatedNode(_Strict):
    """A Kubernetes node of the emulated cluster and the GPU profile its agents report."""

    name: str = Field(min_length=1, max_length=253)
    profile: str = Field(
        min_length=1, description="Recorded hardware profile (see gpufleet.hardware.profiles)."
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        from gpufleet.hardware.profiles import list_profiles

        known = list_profiles()
        if value not in known:
            raise ValueError(f"unknown hardware profile {value!r}; known: {', '.join(sorted(known))}")
        return value


class Rollout(_Strict):
    """An EngineRelease to publish once the fleet is steady, and what should come of it."""

    release: dict[str, Any]
    behaviour: Behaviour = Field(default="ok", description="How the simulated kubelet runs its image.")
    expect: Outcome = "Succeeded"

    @field_validator("release")
    @classmethod
    def _is_release(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("kind") != "EngineRelease":
            raise ValueError("rollouts[].release must be an EngineRelease manifest")
        if "@sha256:" not in str(value.get("spec", {}).get("image", "")):
            raise ValueError("rollouts[].release.spec.image must reference an image by digest")
        return value

    @property
    def image(self) -> str:
        return str(self.release["spec"]["image"])

    @property
    def version(self) -> str:
        return str(self.release["spec"]["version"])


class Scenario(_Strict):
    """Everything the demo runs."""

    namespace: str = Field(default="fleet", min_length=1, max_length=63)
    nodes: list[EmulatedNode] = Field(min_length=1)
    objects: list[dict[str, Any]] = Field(min_length=1)
    rollouts: list[Rollout] = Field(default_factory=list)

    @field_validator("objects")
    @classmethod
    def _manifests(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, obj in enumerate(value):
            for key in ("apiVersion", "kind", "metadata"):
                if key not in obj:
                    raise ValueError(f"objects[{i}] has no {key}")
            if not obj["metadata"].get("name"):
                raise ValueError(f"objects[{i}].metadata.name is required")
        return value

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


def _describe(index: int, obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    kind = obj.get("kind")
    return f"objects[{index}] ({kind} {name!r})" if name else f"objects[{index}] ({kind})"


def object_problems(objects: list[dict[str, Any]]) -> list[str]:
    """What the API server would reject in the scenario's manifests, one line per object.

    Checked before the cluster starts, with the same CRD schemas and CEL rules the emulator
    enforces (and ``kubectl apply``'s strict field validation), so a typo is one clean message
    naming the object and the field instead of a failure half-way through the demo.
    """
    import difflib

    from gpufleet.api.validation import compile_crd
    from gpufleet_devcluster.cluster import DEFAULT_CRD_DIR, generated_crds, load_crds
    from gpufleet_devcluster.resources import builtin_types

    crds = load_crds(DEFAULT_CRD_DIR) if DEFAULT_CRD_DIR.is_dir() else generated_crds()
    custom: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in crds:
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"].get("versions") or []:
            custom[(f"{group}/{version['name']}", kind)] = crd
    builtin = {(t.api_version, t.kind) for t in builtin_types()}
    known = sorted({k for _, k in custom} | {k for _, k in builtin})
    problems: list[str] = []
    for i, obj in enumerate(objects):
        what = _describe(i, obj)
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        if key in builtin:
            continue
        found = custom.get(key)
        if found is None:
            kinds = [k for v, k in custom if v == key[0]] or known
            close = difflib.get_close_matches(key[1], kinds, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(set(kinds)))})"
            problems.append(f"{what}: no kind {key[1]!r} in {key[0]}{hint}")
            continue
        errors = compile_crd(found).validate(obj)
        if errors:
            problems.append(f"{what}: " + "; ".join(str(e) for e in errors))
    return problems


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping with nodes, objects and rollouts")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ScenarioError(f"{source}: {problems}") from exc
    releases = [r.release for r in scenario.rollouts]
    bad = object_problems(scenario.objects) + [
        p.replace("objects[", "rollouts[", 1).replace("]", "].release", 1) for p in object_problems(releases)
    ]
    if bad:
        raise ScenarioError(f"{source}: " + "\n  ".join(bad))
    return scenario


def default_scenario_text() -> str:
    return resources.files("gpufleet_demo").joinpath("scenario.yaml").read_text()


def load_scenario(path: Path | None = None) -> Scenario:
    """The scenario at ``path``, or the packaged default."""
    if path is None:
        return parse_scenario(default_scenario_text(), source="default scenario")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from exc
    return parse_scenario(text, source=str(path))
