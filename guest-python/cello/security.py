"""Guards and rate limits a route declares; the host enforces them in Rust
before the handler runs, so a refused request never reaches the guest.

    from cello import RateLimitConfig, RoleGuard

    app.enable_rate_limit(RateLimitConfig.token_bucket(capacity=100, refill_rate=10))

    @app.post("/articles", guards=[RoleGuard(["editor"])],
              rate_limit=RateLimitConfig.sliding_window(capacity=5, window_seconds=60))
    def publish(request: Request):
        return {"by": request.user}

A guarded route needs a valid bearer token (the host's ``[auth]``): none or
a bad one is 401, one without the roles or scopes is 403. Verified claims
reach the handler as ``request.claims`` (``request.user`` is their ``sub``).
"""

from __future__ import annotations

from dataclasses import dataclass

_KEYS = ("client-address", "subject", "tenant")


@dataclass(frozen=True)
class RoleGuard:
    """The caller's token must hold every one of ``roles`` (claim ``roles``
    or ``role``)."""

    roles: list[str]


@dataclass(frozen=True)
class ScopeGuard:
    """The caller's token must hold every one of ``scopes`` (claim ``scope``
    or ``scp``)."""

    scopes: list[str]


@dataclass(frozen=True)
class RateLimitConfig:
    """A request budget per caller: ``key`` is ``"client-address"`` (the
    peer; ``X-Forwarded-For`` only from the host's trusted proxies),
    ``"subject"`` (the token's ``sub``) or ``"tenant"``."""

    kind: str
    capacity: int
    period_seconds: int
    key: str = "client-address"

    @classmethod
    def token_bucket(
        cls, capacity: int, refill_rate: float, key: str = "client-address"
    ) -> RateLimitConfig:
        """Bursts of up to ``capacity``, refilled at ``refill_rate`` per second."""
        if capacity < 1 or refill_rate <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and refill_rate > 0")
        period = max(1, round(capacity / refill_rate))
        return cls("token-bucket", capacity, period, _key(key))

    @classmethod
    def sliding_window(
        cls, capacity: int, window_seconds: int, key: str = "client-address"
    ) -> RateLimitConfig:
        """At most ``capacity`` requests in any ``window_seconds``."""
        if capacity < 1 or window_seconds < 1:
            raise ValueError("a sliding window needs capacity >= 1 and window_seconds >= 1")
        return cls("sliding-window", capacity, window_seconds, _key(key))


def _key(key: str) -> str:
    if key not in _KEYS:
        raise ValueError(f"rate limit key {key!r} is not one of {', '.join(_KEYS)}")
    return key
