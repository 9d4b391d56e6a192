"""Detect, validate, select: what the agent will run, or why it refuses, as the /v1/hardware document.

All decisions come from ``gpufleet.hardware`` so the agent and the operator agree; this module only
wires them to the agent's configuration and adds what running inside the image needs (the engine's
virtual environment, flags the agent itself depends on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.hardware.agent import HardwareDocument
from gpufleet.hardware.report import GPUDevice, HardwareReport
from gpufleet_node.config import AgentConfig
from gpufleet_node.engines import EngineName, parse_engine, resolve_interpreter

# Flags the agent relies on that engine_command leaves out: SGLang serves /metrics only with this.
AGENT_REQUIRED_FLAGS: dict[EngineName, tuple[str, ...]] = {"vllm": (), "sglang": ("--enable-metrics",)}


@dataclass
class Plan:
    """The agent's decision; ``engine``/``command`` are None when it refuses to start an engine."""

    document: dict[str, Any]
    engine: EngineName | None = None
    command: list[str] | None = None
    blocked: dict[str, str] | None = None
    gfd_labels: dict[str, str] = field(default_factory=dict)
    device_uuid: str | None = None

    def engine_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The engine's environment, pinned to this pod's GPU by UUID (CUDA may order GPUs unlike NVML)."""
        env = dict(base)
        if self.device_uuid:
            env["CUDA_VISIBLE_DEVICES"] = self.device_uuid
        return env


def pick_device(report: HardwareReport, device_index: int, uuid: str | None) -> GPUDevice | None:
    """The pod's GPU: by UUID when given, else by index, else the only GPU the container can see.

    With the NVIDIA device plugin a container sees just its allocated GPU and NVML numbers it 0, so
    the host index the operator passes may not exist inside the pod; the single visible GPU is it.
    """
    if uuid:
        return next((d for d in report.devices if d.uuid == uuid), None)
    by_index = next((d for d in report.devices if d.index == device_index), None)
    if by_index is not None:
        return by_index
    return report.devices[0] if len(report.devices) == 1 else None


def with_required_flags(command: list[str], engine: EngineName) -> list[str]:
    """Append flags the agent needs (e.g. SGLang metrics) unless the command already has them."""
    return command + [flag for flag in AGENT_REQUIRED_FLAGS[engine] if flag not in command]


def _load_report(profile: str) -> tuple[HardwareReport, dict[str, str]]:
    """A recorded profile by name (with its GFD labels) or a JSON file holding a profile or a bare report."""
    from gpufleet.hardware.profiles import list_profiles, load_profile, profile_gfd_labels

    if profile in list_profiles():
        return load_profile(profile), profile_gfd_labels(profile)
    path = Path(profile)
    if not path.is_file():
        raise FileNotFoundError(
            f"GPUFLEET_HARDWARE_PROFILE={profile!r} is neither a recorded profile "
            f"({', '.join(list_profiles())}) nor a JSON file"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "report" in data:
        labels = (data.get("metadata") or {}).get("gfd_labels") or {}
        return HardwareReport.model_validate(data["report"]), dict(labels)
    return HardwareReport.model_validate(data), {}


def wire(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the protocol model serves it (``gpufleet.hardware.agent.HardwareDocument``)."""
    return HardwareDocument.model_validate(document).to_json()


def _blocked(document: dict[str, Any], code: str, message: str) -> Plan:
    document["blocked"] = {"reason": code, "message": message}
    return Plan(document=wire(document), blocked={"reason": code, "message": message})


def make_plan(config: AgentConfig, env: Mapping[str, str]) -> Plan:
    """Run detection, validation and engine selection for this agent's device."""
    from gpufleet.hardware.catalog import load_catalog
    from gpufleet.hardware.detect import DetectionError, NvmlBackend, ProfileBackend, detect
    from gpufleet.hardware.engine_select import model_requirements, select_engine_for_report
    from gpufleet.hardware.validation import validate_report

    document: dict[str, Any] = {
        "report": None,
        "validation": [],
        "engine": None,
        "agent": {
            "deviceIndex": config.device_index,
            "model": config.model,
            "requestedEngine": config.engine,
            "pool": config.pool,
            "node": config.node,
            "source": f"profile:{config.hardware_profile}" if config.hardware_profile else "nvml",
        },
    }
    gfd_labels: dict[str, str] = {}
    try:
        if config.hardware_profile:
            report, gfd_labels = _load_report(config.hardware_profile)
            report = detect(ProfileBackend(report))
        else:
            report = detect(NvmlBackend())
    except DetectionError as exc:
        return _blocked(document, exc.code, str(exc))
    except (FileNotFoundError, ValueError) as exc:
        return _blocked(document, "ProfileUnreadable", str(exc))
    document["report"] = report.model_dump(mode="json")

    min_driver = env.get("GPUFLEET_MIN_DRIVER_VERSION") or None
    try:
        results = validate_report(
            report, load_catalog(), gfd_labels=gfd_labels or None, min_driver_version=min_driver
        )
    except ValueError as exc:
        return _blocked(document, "InvalidConfiguration", f"GPUFLEET_MIN_DRIVER_VERSION: {exc}")
    document["validation"] = [r.model_dump(mode="json") for r in results]
    by_index = {device.index: result for device, result in zip(report.devices, results, strict=True)}
    wanted_uuid = env.get("GPUFLEET_DEVICE_UUID") or None
    device = pick_device(report, config.device_index, wanted_uuid)
    if device is None:
        wanted = (
            f"GPUFLEET_DEVICE_UUID={wanted_uuid}"
            if wanted_uuid
            else f"GPUFLEET_DEVICE_INDEX={config.device_index}"
        )
        visible = [f"{d.index}:{d.uuid}" for d in report.devices]
        return _blocked(document, "DeviceNotFound", f"{wanted} but the visible GPUs are {visible}")
    document["agent"]["device"] = {"index": device.index, "uuid": device.uuid}
    mine = by_index[device.index]
    if not mine.valid:
        message = f"GPU {device.index} ({device.uuid}) is blocked: {mine.message}"
        return _blocked(document, mine.reason, message)

    try:
        params = env.get("GPUFLEET_MODEL_PARAMS_BILLION")
        requirements = model_requirements(
            config.model,
            quantization=env.get("GPUFLEET_QUANTIZATION") or None,
            max_model_len=config.max_model_len,
            params_billion=float(params) if params else None,
        )
    except ValueError as exc:
        return _blocked(document, "ModelUnknown", str(exc))
    decision = select_engine_for_report(
        report,
        requirements,
        preference=config.engine,
        device_indexes=[device.index],
        port=config.engine_port,
    )
    if decision.engine is None or decision.command is None:
        document["engine"] = decision.model_dump(mode="json")
        return _blocked(document, decision.rule, f"no engine can run: {decision.reason}")
    engine = parse_engine(decision.engine)
    command = resolve_interpreter(with_required_flags(decision.command, engine), engine, config.venv_root)
    document["engine"] = decision.model_copy(update={"command": command}).model_dump(mode="json")
    return Plan(
        document=wire(document),
        engine=engine,
        command=command,
        gfd_labels=gfd_labels,
        device_uuid=device.uuid,
    )
