"""A circuit breaker per provider.

CLOSED: calls go through; `threshold` failed attempts in a row open it. OPEN: the provider is skipped
until `cooldown` has passed. HALF_OPEN: the wait is over; one trial call goes through, and its outcome
closes the circuit or opens it for another cooldown.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.time) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.consecutive_failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() < self._opened_at + self.cooldown:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    @property
    def retry_time(self) -> float | None:
        """While OPEN: when the trial call is allowed (seconds since the epoch of `clock`)."""
        return self._opened_at + self.cooldown if self.state is CircuitState.OPEN else None

    def try_acquire(self) -> bool:
        """Whether a call may go now; in HALF_OPEN only one trial at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self._trial_running or self.consecutive_failures >= self.threshold:
            self._opened_at = self._clock()
        self._trial_running = False

    def release(self) -> None:
        """End a call that said nothing about the provider's health (a bad request)."""
        self._trial_running = False
