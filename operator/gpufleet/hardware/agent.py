"""The node agent's status protocol (``GET /v1/hardware``, ``GET /readyz`` on port 8080), as models.

One definition used by the three parties that speak it (issue #14): the agent
(``node-image/gpufleet_node``) builds its answers with it, the emulator's simulated agents
(``gpufleet_devcluster.agents``) too, and the operator parses what it fetches with it
(``gpufleet.devices.parse_agent_report``). The operator never trusts the agent's verdict: it
re-validates ``report`` itself; ``validation`` and ``blocked`` are for people and the agent's own
``/readyz``.

Parsing is lenient where the operator must survive a misbehaving agent (issue #21 F4): unknown
engine names parse (``AgentEngine.engine`` is a plain string) so that the operator can block the
device with a reason instead of failing its status write; unknown extra keys are kept.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.hardware.report import HardwareReport

#: Engines an InferenceNode's status can name (the CRD's enum); anything else blocks the device.
KNOWN_ENGINES = frozenset({"vllm", "sglang"})

#: Largest /v1/hardware or /readyz body the operator reads (a real 8-GPU report is ~5 KB).
MAX_ANSWER_BYTES = 256 * 1024


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AgentState(StrEnum):
    """``/readyz`` ``state``: what the agent's engine supervisor is doing."""

    STARTING = "Starting"
    LOADING = "Loading"
    READY = "Ready"
    UNHEALTHY = "Unhealthy"
    BACKOFF = "BackOff"
    CRASH_LOOP = "CrashLoop"
    BLOCKED = "Blocked"
    DRAINING = "Draining"
    STOPPED = "Stopped"


class Blocked(_Lenient):
    """Why the agent refuses to start an engine (validation failed, no engine fits, bad config)."""

    reason: str
    message: str = ""


class AgentDevice(_Lenient):
    index: int
    uuid: str


class AgentInfo(_Lenient):
    """Who answered: the agent's configuration and the GPU it actually uses."""

    device_index: int | None = Field(default=None, alias="deviceIndex")
    device: AgentDevice | None = None
    model: str | None = None
    requested_engine: str | None = Field(default=None, alias="requestedEngine")
    pool: str | None = None
    node: str | None = None
    source: str | None = None


class AgentEngine(_Lenient):
    """The engine decision (``EngineDecision`` as JSON); ``engine`` is whatever the agent says."""

    engine: str | None = None
    rule: str | None = None
    reason: str | None = None


class HardwareDocument(_Lenient):
    """``GET /v1/hardware``: the report (``None`` when detection failed) and the agent's decisions."""

    report: HardwareReport | None = None
    validation: list[dict[str, Any]] = Field(default_factory=list)
    engine: AgentEngine | None = None
    agent: AgentInfo | None = None
    blocked: Blocked | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form: what was set (``report: null`` included), camelCase keys."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Readiness(_Lenient):
    """``GET /readyz`` body; HTTP 200 only when ``ready`` (the engine is healthy and smoke-tested)."""

    ready: bool
    state: str | None = None  # an AgentState; a string so a newer agent's states still parse
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
