"""kcontrol: every refusal says what was wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpufleet.reputation.kcontrol import KControlError
from tests.unit.reputation.messages import cases

CASES = cases(KControlError)


@pytest.mark.parametrize(("call", "message"), CASES, ids=[m[:40] for _, m in CASES])
def test_refusals_say_why(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(KControlError, match=message):
        call()
