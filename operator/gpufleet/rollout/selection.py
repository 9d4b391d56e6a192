"""Which EngineRelease a node should run.

Channels are nested: a node on ``candidate`` also takes ``stable`` releases and a node on
``nightly`` takes all three, so following a less conservative channel never leaves a node behind
the stable line. A pinned version is an explicit choice and bypasses the channel and the major
version gate (but never the driver/CUDA minimum). Automatic selection never downgrades.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet.rollout.semver import InvalidVersion, Version, dotted_at_least
from gpufleet.rollout.state import FailureRecord

CHANNELS: tuple[str, ...] = ("stable", "candidate", "nightly")
DEFAULT_CHANNEL = "stable"


class HoldReason(StrEnum):
    """Why a newer release is not taken by a node (stable; used as the condition reason)."""

    DRIVER_TOO_OLD = "DriverTooOld"
    CUDA_TOO_OLD = "CUDATooOld"
    DRIVER_VERSION_UNKNOWN = "DriverVersionUnknown"
    ENGINE_NOT_SUPPORTED = "EngineNotSupported"
    AWAITING_APPROVAL = "AwaitingMajorVersionApproval"
    RELEASE_HALTED = "ReleaseHalted"
    PREVIOUSLY_FAILED = "PreviouslyFailed"


@dataclass(frozen=True)
class ReleaseView:
    """What selection and planning need of an EngineRelease."""

    name: str
    version: Version
    image: str
    channel: str = DEFAULT_CHANNEL
    min_driver_version: str | None = None
    min_cuda_version: str | None = None
    engines: frozenset[str] = frozenset()
    failure_budget: int = 3
    resume_count: int = 0
    halted: bool = False

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"EngineRelease {self.name}: channel {self.channel!r} is not one of {CHANNELS}")
        if "@sha256:" not in self.image:
            raise ValueError(f"EngineRelease {self.name}: image {self.image!r} must be referenced by digest")


@dataclass(frozen=True)
class NodeHardware:
    """The node's driver stack as reported by GPU Feature Discovery / the agent."""

    driver_version: str | None = None
    cuda_version: str | None = None
    engines: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hold:
    release: str
    version: str
    reason: HoldReason
    message: str


@dataclass(frozen=True)
class Selection:
    """The release a node should move to (``None``: stay where it is) and the newer ones it skipped."""

    target: ReleaseView | None
    holds: tuple[Hold, ...] = field(default_factory=tuple)
    reason: str = "UpToDate"
    message: str = ""


def channels_followed(channel: str) -> frozenset[str]:
    if channel not in CHANNELS:
        raise ValueError(f"release channel {channel!r} is not one of {CHANNELS}")
    return frozenset(CHANNELS[: CHANNELS.index(channel) + 1])


def compatibility_hold(release: ReleaseView, hardware: NodeHardware) -> Hold | None:
    """Why this node's GPUs cannot run ``release`` (``None`` when they can)."""

    def hold(reason: HoldReason, message: str) -> Hold:
        return Hold(release.name, str(release.version), reason, message)

    if release.min_driver_version:
        if not hardware.driver_version:
            return hold(
                HoldReason.DRIVER_VERSION_UNKNOWN,
                f"release {release.version} needs NVIDIA driver >= {release.min_driver_version} "
                "but the node's driver version is unknown",
            )
        if not dotted_at_least(hardware.driver_version, release.min_driver_version, what="driver"):
            return hold(
                HoldReason.DRIVER_TOO_OLD,
                f"release {release.version} needs NVIDIA driver >= {release.min_driver_version}, "
                f"node has {hardware.driver_version}",
            )
    if release.min_cuda_version:
        if not hardware.cuda_version:
            return hold(
                HoldReason.DRIVER_VERSION_UNKNOWN,
                f"release {release.version} needs CUDA >= {release.min_cuda_version} "
                "but the node's CUDA version is unknown",
            )
        if not dotted_at_least(hardware.cuda_version, release.min_cuda_version, what="CUDA"):
            return hold(
                HoldReason.CUDA_TOO_OLD,
                f"release {release.version} needs CUDA >= {release.min_cuda_version}, "
                f"node's driver supports {hardware.cuda_version}",
            )
    if release.engines and hardware.engines and not hardware.engines <= release.engines:
        missing = ", ".join(sorted(hardware.engines - release.engines))
        return hold(
            HoldReason.ENGINE_NOT_SUPPORTED,
            f"release {release.version} does not ship engine(s) {missing} used on this node",
        )
    return None


def _failed_here(release: ReleaseView, failure: FailureRecord | None) -> bool:
    return (
        failure is not None
        and failure.version == str(release.version)
        and failure.resume_count >= release.resume_count
    )


def _parse_optional(text: str | None, what: str) -> Version | None:
    if text is None:
        return None
    try:
        return Version.parse(text)
    except InvalidVersion as exc:
        raise InvalidVersion(f"{what}: {exc}") from exc


def select_release(
    releases: Iterable[ReleaseView],
    *,
    current_version: str | None,
    channel: str | None = None,
    pinned_version: str | None = None,
    automatic: bool = True,
    approved_major: int | None = None,
    hardware: NodeHardware | None = None,
    failure: FailureRecord | None = None,
) -> Selection:
    """Pick the release the node should run next.

    ``approved_major`` is the highest major version a person approved on the node or its pool;
    the caller passes the larger of the two. A first install (no current version) takes the newest
    compatible release of the channel without needing approval: there is nothing to upgrade from.
    """
    if channel is not None and pinned_version is not None:
        raise ValueError("spec.release: set either channel or version, not both")
    hardware = hardware or NodeHardware()
    current = _parse_optional(current_version, "status.currentVersion")
    ordered: Sequence[ReleaseView] = sorted(releases, key=lambda r: (r.version, r.name), reverse=True)

    if pinned_version is not None:
        pinned = _parse_optional(pinned_version, "spec.release.version")
        matches = [r for r in ordered if r.version == pinned]
        if not matches:
            return Selection(
                None, (), "PinnedVersionNotFound", f"no EngineRelease has version {pinned_version}"
            )
        release = matches[0]
        if current is not None and release.version == current:
            return Selection(None, (), "UpToDate", f"running pinned version {pinned_version}")
        blocked = _hold_for(release, hardware, failure, current=current, approved_major=None, gate=False)
        if blocked is not None:
            return Selection(None, (blocked,), blocked.reason.value, blocked.message)
        return Selection(release, (), "Pinned", f"pinned to {pinned_version}")

    followed = channels_followed(channel or DEFAULT_CHANNEL)
    running = next((r for r in ordered if current is not None and r.version == current), None)
    if running is not None and running.halted:
        # The node runs a release that was halted fleet-wide: it must not stay there (a node
        # that completed it before the halt, or whose GPUs are all blocked so nothing failed).
        # Take the newest release that is not held back, older ones included.
        escape = _leave_halted(ordered, followed, running, hardware, failure)
        if escape is not None:
            return escape
    if current is not None and not automatic:
        return Selection(None, (), "AutomaticUpdatesDisabled", "spec.updatePolicy.automatic is false")
    holds: list[Hold] = []
    for release in ordered:
        if release.channel not in followed:
            continue
        if current is not None and release.version <= current:
            break
        blocked = _hold_for(
            release, hardware, failure, current=current, approved_major=approved_major, gate=True
        )
        if blocked is not None:
            holds.append(blocked)
            continue
        return Selection(
            release, tuple(holds), "NewerRelease", f"{release.version} available on {release.channel}"
        )
    if current is None and not holds:
        return Selection(None, (), "NoReleaseOnChannel", f"no EngineRelease on channel {sorted(followed)}")
    reason = holds[0].reason.value if holds else "UpToDate"
    message = holds[0].message if holds else (f"running {current}" if current else "")
    return Selection(None, tuple(holds), reason, message)


#: Selection reason when a node moves off its halted release (also a downgrade).
LEAVING_HALTED = "LeavingHaltedRelease"


def _leave_halted(
    ordered: Sequence[ReleaseView],
    followed: frozenset[str],
    running: ReleaseView,
    hardware: NodeHardware,
    failure: FailureRecord | None,
) -> Selection | None:
    for release in ordered:
        if release.channel not in followed or release.version == running.version:
            continue
        if _hold_for(release, hardware, failure, current=None, approved_major=None, gate=False) is None:
            return Selection(
                release,
                (),
                LEAVING_HALTED,
                f"release {running.version} is halted; moving to {release.version}",
            )
    return None


def _hold_for(
    release: ReleaseView,
    hardware: NodeHardware,
    failure: FailureRecord | None,
    *,
    current: Version | None,
    approved_major: int | None,
    gate: bool,
) -> Hold | None:
    incompatible = compatibility_hold(release, hardware)
    if incompatible is not None:
        return incompatible
    if release.halted:
        return Hold(
            release.name,
            str(release.version),
            HoldReason.RELEASE_HALTED,
            f"release {release.version} is halted after failures; resume it to continue",
        )
    if _failed_here(release, failure):
        return Hold(
            release.name,
            str(release.version),
            HoldReason.PREVIOUSLY_FAILED,
            f"release {release.version} already failed on this node and was rolled back",
        )
    needs_approval = gate and current is not None and release.version.is_major_upgrade_from(current)
    if needs_approval and (approved_major is None or approved_major < release.version.major):
        return Hold(
            release.name,
            str(release.version),
            HoldReason.AWAITING_APPROVAL,
            f"major version {release.version.major} needs approval: set "
            f"spec.updatePolicy.approvedMajorVersion: {release.version.major} on the node or its pool",
        )
    return None
