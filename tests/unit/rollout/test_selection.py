from __future__ import annotations

import pytest

from gpufleet.rollout.selection import (
    HoldReason,
    NodeHardware,
    ReleaseView,
    channels_followed,
    select_release,
)
from gpufleet.rollout.semver import InvalidVersion, Version
from gpufleet.rollout.state import FailureReason, FailureRecord

DIGEST = "@sha256:" + "a" * 64
HW = NodeHardware(driver_version="550.54.15", cuda_version="12.4", engines=frozenset({"vllm"}))


def rel(version: str, channel: str = "stable", **kw: object) -> ReleaseView:
    return ReleaseView(
        name=f"engine-{version.replace('.', '-')}",
        version=Version.parse(version),
        image=f"registry.example/engine{DIGEST}",
        channel=channel,
        **kw,  # type: ignore[arg-type]
    )


def test_channels_are_nested() -> None:
    assert channels_followed("stable") == {"stable"}
    assert channels_followed("candidate") == {"stable", "candidate"}
    assert channels_followed("nightly") == {"stable", "candidate", "nightly"}
    with pytest.raises(ValueError, match="'beta' is not one of"):
        channels_followed("beta")


def test_minor_and_patch_updates_are_taken_automatically_newest_first() -> None:
    releases = [rel("1.0.0"), rel("1.1.0"), rel("1.1.1"), rel("1.2.0", "candidate")]
    chosen = select_release(releases, current_version="1.0.0", hardware=HW)
    assert chosen.target is not None
    assert str(chosen.target.version) == "1.1.1"
    on_candidate = select_release(releases, current_version="1.0.0", channel="candidate", hardware=HW)
    assert on_candidate.target is not None
    assert str(on_candidate.target.version) == "1.2.0"


def test_up_to_date_and_no_downgrade() -> None:
    releases = [rel("1.0.0"), rel("1.1.0")]
    same = select_release(releases, current_version="1.1.0", hardware=HW)
    assert same.reason == "UpToDate"
    assert same.target is None
    # A node ahead of the channel (e.g. it moved from nightly back to stable) is not downgraded.
    ahead = select_release(releases, current_version="1.3.0", hardware=HW)
    assert ahead.target is None


def test_major_version_waits_for_approval_but_minor_of_current_major_proceeds() -> None:
    releases = [rel("1.0.0"), rel("1.4.0"), rel("2.0.0")]
    waiting = select_release(releases, current_version="1.0.0", hardware=HW)
    assert waiting.target is not None
    assert str(waiting.target.version) == "1.4.0"
    assert [h.reason for h in waiting.holds] == [HoldReason.AWAITING_APPROVAL]
    assert "approvedMajorVersion: 2" in waiting.holds[0].message

    held = select_release(releases, current_version="1.4.0", hardware=HW)
    assert held.target is None
    assert held.reason == "AwaitingMajorVersionApproval"

    approved = select_release(releases, current_version="1.4.0", approved_major=2, hardware=HW)
    assert approved.target is not None
    assert str(approved.target.version) == "2.0.0"
    # Approving major 2 does not approve major 3.
    also_3 = select_release([*releases, rel("3.0.0")], current_version="1.4.0", approved_major=2, hardware=HW)
    assert also_3.target is not None
    assert str(also_3.target.version) == "2.0.0"


def test_first_install_takes_newest_without_approval() -> None:
    chosen = select_release([rel("1.0.0"), rel("2.1.0")], current_version=None, hardware=HW)
    assert chosen.target is not None
    assert str(chosen.target.version) == "2.1.0"


def test_driver_too_old_is_skipped_with_reason_and_older_compatible_release_is_used() -> None:
    releases = [rel("1.0.0"), rel("1.1.0"), rel("1.2.0", min_driver_version="560.28.03")]
    chosen = select_release(releases, current_version="1.0.0", hardware=HW)
    assert chosen.target is not None
    assert str(chosen.target.version) == "1.1.0"
    (hold,) = chosen.holds
    assert hold.reason == HoldReason.DRIVER_TOO_OLD
    assert "560.28.03" in hold.message
    assert "550.54.15" in hold.message


@pytest.mark.parametrize(
    ("kw", "hardware", "reason"),
    [
        ({"min_cuda_version": "12.8"}, HW, HoldReason.CUDA_TOO_OLD),
        ({"min_driver_version": "550.0"}, NodeHardware(), HoldReason.DRIVER_VERSION_UNKNOWN),
        ({"engines": frozenset({"sglang"})}, HW, HoldReason.ENGINE_NOT_SUPPORTED),
        ({"halted": True}, HW, HoldReason.RELEASE_HALTED),
    ],
)
def test_incompatible_or_halted_releases_are_held(
    kw: dict[str, object], hardware: NodeHardware, reason: str
) -> None:
    chosen = select_release([rel("1.0.0"), rel("1.1.0", **kw)], current_version="1.0.0", hardware=hardware)
    assert chosen.target is None
    assert chosen.reason == reason
    assert [h.reason for h in chosen.holds] == [reason]


def test_a_release_that_failed_here_is_not_retried_until_resumed() -> None:
    failure = FailureRecord(version="1.1.0", reason=FailureReason.CRASH_LOOP, resume_count=0)
    releases = [rel("1.0.0"), rel("1.1.0")]
    held = select_release(releases, current_version="1.0.0", hardware=HW, failure=failure)
    assert [h.reason for h in held.holds] == [HoldReason.PREVIOUSLY_FAILED]
    resumed = select_release(
        [rel("1.0.0"), rel("1.1.0", resume_count=1)], current_version="1.0.0", hardware=HW, failure=failure
    )
    assert resumed.target is not None
    assert str(resumed.target.version) == "1.1.0"


def test_pinned_version_bypasses_channel_and_gate_but_not_driver() -> None:
    releases = [rel("1.0.0"), rel("2.0.0", "nightly"), rel("2.1.0", min_driver_version="999.0")]
    pinned = select_release(releases, current_version="1.0.0", pinned_version="2.0.0", hardware=HW)
    assert pinned.target is not None
    assert str(pinned.target.version) == "2.0.0"
    # Pinning an older version is an explicit downgrade.
    down = select_release(releases, current_version="2.0.0", pinned_version="1.0.0", hardware=HW)
    assert down.target is not None
    assert str(down.target.version) == "1.0.0"
    blocked = select_release(releases, current_version="1.0.0", pinned_version="2.1.0", hardware=HW)
    assert blocked.target is None
    assert blocked.reason == "DriverTooOld"
    missing = select_release(releases, current_version="1.0.0", pinned_version="9.9.9", hardware=HW)
    assert missing.target is None
    assert missing.reason == "PinnedVersionNotFound"


def test_automatic_off_keeps_current_version() -> None:
    chosen = select_release(
        [rel("1.0.0"), rel("1.1.0")], current_version="1.0.0", automatic=False, hardware=HW
    )
    assert chosen.target is None
    assert chosen.reason == "AutomaticUpdatesDisabled"


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="either channel or version"):
        select_release([], current_version=None, channel="stable", pinned_version="1.0.0")
    with pytest.raises(InvalidVersion, match=r"status.currentVersion: invalid semantic version 'latest'"):
        select_release([rel("1.0.0")], current_version="latest")
    with pytest.raises(ValueError, match="must be referenced by digest"):
        ReleaseView(name="x", version=Version.parse("1.0.0"), image="engine:latest")


def test_a_new_node_never_gets_a_halted_release() -> None:
    releases = [rel("1.0.0"), rel("1.1.0", halted=True)]
    chosen = select_release(releases, current_version=None, hardware=HW)
    assert chosen.target is not None
    assert str(chosen.target.version) == "1.0.0"
    assert chosen.holds[0].reason == HoldReason.RELEASE_HALTED


def test_a_node_on_a_halted_release_moves_to_the_newest_good_one_even_if_older() -> None:
    releases = [rel("1.0.0"), rel("1.0.1"), rel("1.1.0", halted=True), rel("1.2.0", "candidate")]
    chosen = select_release(releases, current_version="1.1.0", hardware=HW)
    assert chosen.target is not None
    assert (str(chosen.target.version), chosen.reason) == ("1.0.1", "LeavingHaltedRelease")
    # ... also with automatic updates off: a halted release is not a resting place.
    off = select_release(releases, current_version="1.1.0", automatic=False, hardware=HW)
    assert off.target is not None
    assert str(off.target.version) == "1.0.1"
    # Nothing good to go to: stay (and say why).
    alone = select_release([rel("1.1.0", halted=True)], current_version="1.1.0", hardware=HW)
    assert alone.target is None


def test_leaving_a_halted_release_still_respects_driver_gates() -> None:
    releases = [rel("1.0.0", min_driver_version="999.0"), rel("1.0.1"), rel("1.1.0", halted=True)]
    chosen = select_release(releases, current_version="1.1.0", hardware=HW)
    assert chosen.target is not None
    assert str(chosen.target.version) == "1.0.1"
    gated = [rel("1.0.0", min_driver_version="999.0"), rel("1.1.0", halted=True)]
    assert select_release(gated, current_version="1.1.0", hardware=HW).target is None
