"""One back-off policy for every controller: exponential, capped, with full jitter.

Jitter matters at fleet scale: a thousand keys that failed in the same API brownout must not all
retry in the same millisecond (issue #21, F2/F11). ``Backoff`` keeps the attempt count per key so a
controller only says ``failed(key)`` / ``succeeded(key)`` and gets the delay to wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Per-key exponential back-off: ``base * 2**(n-1)`` capped at ``cap``, times a jitter factor.

    The jitter factor is drawn from ``[1 - jitter, 1]`` so a delay is never longer than the cap and
    never shorter than ``(1 - jitter)`` of the nominal one.
    """

    base: float = 0.5
    cap: float = 60.0
    jitter: float = 0.5
    rand: Callable[[], float] = random.random
    _attempts: dict[Hashable, int] = field(default_factory=dict)

    def nominal(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))

    def failed(self, key: Hashable) -> float:
        """Record one more failure of ``key``; the delay before its next try."""
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        return self.nominal(attempt) * (1.0 - self.jitter * self.rand())

    def succeeded(self, key: Hashable) -> None:
        self._attempts.pop(key, None)

    def attempts(self, key: Hashable) -> int:
        return self._attempts.get(key, 0)

    def keys(self) -> list[Hashable]:
        return list(self._attempts)
