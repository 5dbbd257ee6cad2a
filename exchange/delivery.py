"""Push delivery to one subscriber as a declared state machine (style.md principle 9).

A subscriber's row says how far its pushes got (``delivered``: the log size it holds),
whether a delivery is due, and the state of its circuit breaker. The transition functions
are pure; the worker claims due rows, pushes, and applies :func:`succeeded` or
:func:`failed`. Publishing never waits on any of this.

    closed ──failure──▶ closed (backoff)  … after ``breaker_threshold`` failures in a row ──▶ open
    open ──cool-down over──▶ half-open ──success──▶ closed
                                        └─failure──▶ open (longer cool-down)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

__all__ = ["DeliveryPolicy", "DeliveryState", "claim", "due", "failed", "initial", "succeeded"]

STATES = ("closed", "open", "half-open")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    base_delay_s: float = 1.0
    max_delay_s: float = 600.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 60.0
    max_entries_per_push: int = 500


@dataclass(frozen=True, slots=True)
class DeliveryState:
    partner: str
    delivered: int  # the subscriber holds entries [0, delivered)
    attempts: int  # failures in a row
    next_attempt_at: datetime
    breaker: str  # closed | open | half-open
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.breaker not in STATES:
            raise ValueError(f"unknown breaker state {self.breaker!r}")


def initial(partner: str, delivered: int, now: datetime) -> DeliveryState:
    """A new subscriber: it pulls the backlog itself; pushes start at ``delivered``."""
    return DeliveryState(partner, delivered, 0, now, "closed")


def due(state: DeliveryState, log_size: int, now: datetime) -> bool:
    """Whether a push should be attempted now."""
    return state.delivered < log_size and now >= state.next_attempt_at


def succeeded(state: DeliveryState, delivered: int, now: datetime) -> DeliveryState:
    return replace(
        state,
        delivered=max(state.delivered, delivered),
        attempts=0,
        next_attempt_at=now,
        breaker="closed",
        last_error="",
    )


def failed(
    state: DeliveryState, error: str, now: datetime, policy: DeliveryPolicy, rng: random.Random
) -> DeliveryState:
    """Exponential backoff with full jitter; the breaker opens after repeated failures."""
    attempts = state.attempts + 1
    if state.breaker == "half-open" or attempts >= policy.breaker_threshold:
        opened = state.breaker in ("open", "half-open")
        cooldown = policy.breaker_cooldown_s * (2 if opened else 1)
        cooldown = min(cooldown * (1 + rng.random()), policy.max_delay_s)
        return replace(
            state,
            attempts=attempts,
            breaker="open",
            last_error=error,
            next_attempt_at=now + timedelta(seconds=cooldown),
        )
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempts - 1))
    delay = rng.uniform(0, ceiling)
    return replace(
        state, attempts=attempts, last_error=error, next_attempt_at=now + timedelta(seconds=delay)
    )


def claim(state: DeliveryState, now: datetime) -> DeliveryState:
    """An open breaker whose cool-down is over lets one trial push through (half-open)."""
    if state.breaker == "open" and now >= state.next_attempt_at:
        return replace(state, breaker="half-open")
    return state
