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

    def __init__(self, roles: list[str] | str):
        object.__setattr__(self, "roles", [roles] if isinstance(roles, str) else list(roles))


@dataclass(frozen=True)
class ScopeGuard:
    """The caller's token must hold every one of ``scopes`` (claim ``scope``
    or ``scp``)."""

    scopes: list[str]

    def __init__(self, scopes: list[str] | str):
        object.__setattr__(self, "scopes", [scopes] if isinstance(scopes, str) else list(scopes))


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
        cls,
        capacity: int | None = None,
        refill_rate: float | None = None,
        key: str = "client-address",
        *,
        requests: int | None = None,
        window: int | None = None,
    ) -> RateLimitConfig:
        """Bursts of up to ``capacity``, refilled at ``refill_rate`` per
        second; or, as the Cello framework spells it, ``requests`` per
        ``window`` seconds (a bucket of ``requests`` refilled over ``window``)."""
        if requests is not None or window is not None:
            if capacity is not None or refill_rate is not None:
                raise ValueError("give capacity= and refill_rate=, or requests= and window=")
            if requests is None or window is None or requests < 1 or window < 1:
                raise ValueError("a token bucket needs requests >= 1 and window >= 1 seconds")
            return cls("token-bucket", int(requests), int(window), _key(key))
        if capacity is None or refill_rate is None:
            raise ValueError(
                "a token bucket needs capacity= and refill_rate= (or requests= and window=)"
            )
        if capacity < 1 or refill_rate <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and refill_rate > 0")
        period = max(1, round(capacity / refill_rate))
        return cls("token-bucket", capacity, period, _key(key))

    @classmethod
    def sliding_window(
        cls,
        capacity: int | None = None,
        window_seconds: int | None = None,
        key: str = "client-address",
        *,
        requests: int | None = None,
        window: int | None = None,
    ) -> RateLimitConfig:
        """At most ``capacity`` (or ``requests``) requests in any
        ``window_seconds`` (or ``window``)."""
        capacity = capacity if capacity is not None else requests
        window_seconds = window_seconds if window_seconds is not None else window
        if capacity is None or window_seconds is None:
            raise ValueError("a sliding window needs capacity= and window_seconds=")
        if capacity < 1 or window_seconds < 1:
            raise ValueError("a sliding window needs capacity >= 1 and window_seconds >= 1")
        return cls("sliding-window", capacity, window_seconds, _key(key))


def _key(key: str) -> str:
    if key not in _KEYS:
        raise ValueError(f"rate limit key {key!r} is not one of {', '.join(_KEYS)}")
    return key
