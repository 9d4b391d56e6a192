"""Which failures are logged without a traceback (#21 F9): routine network trouble, not bugs."""

from __future__ import annotations

import aiohttp
import pytest

from gpufleet.controllers.kube import ROUTINE_ERRORS, AgentUnreachable, ApiError


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerDisconnectedError(),  # printed a traceback from the pod watch under API faults
        aiohttp.ClientConnectionError("reset"),
        ConnectionResetError(),
        TimeoutError(),
        ApiError(503, "ServiceUnavailable", "injected", "list pods"),
        AgentUnreachable("no answer"),
    ],
)
def test_routine_failures_are_routine(exc: BaseException) -> None:
    assert isinstance(exc, ROUTINE_ERRORS)


@pytest.mark.parametrize("exc", [RuntimeError("bug"), KeyError("x"), TypeError("bug")])
def test_bugs_keep_their_traceback(exc: BaseException) -> None:
    assert not isinstance(exc, ROUTINE_ERRORS)
