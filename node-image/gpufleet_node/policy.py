"""When to restart a failed engine, and when to give up and report a crash loop.

Pure and clock-free so the backoff schedule is tested exactly; the supervisor feeds it the facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff with a cap, and a limit on consecutive failed runs."""

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    crash_loop_limit: int = 5
    stable_after: float = 300.0

    def __post_init__(self) -> None:
        if self.base_delay < 0:
            raise ValueError(f"base_delay must be >= 0, got {self.base_delay}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})")
        if self.crash_loop_limit < 0:
            raise ValueError(f"crash_loop_limit must be >= 0, got {self.crash_loop_limit}")
        if self.stable_after < 0:
            raise ValueError(f"stable_after must be >= 0, got {self.stable_after}")

    def delay(self, failures: int) -> float:
        """Backoff before the restart that follows the ``failures``-th consecutive failure (1-based)."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        # Bound the exponent so huge failure counts cannot overflow a float.
        exponent = min(failures - 1, 64)
        return float(min(self.max_delay, self.base_delay * self.factor**exponent))


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay: float
    failures: int


@dataclass
class RestartTracker:
    """Counts consecutive failed runs; a run that stayed ready long enough resets the count."""

    policy: RestartPolicy
    failures: int = 0

    def record_failure(self, ready_for: float | None) -> RestartDecision:
        """Record that a run ended badly; ``ready_for`` is how long it had been ready (None: never)."""
        if ready_for is not None and ready_for >= self.policy.stable_after:
            self.failures = 0
        self.failures += 1
        if self.failures > self.policy.crash_loop_limit:
            return RestartDecision(restart=False, delay=0.0, failures=self.failures)
        return RestartDecision(restart=True, delay=self.policy.delay(self.failures), failures=self.failures)
