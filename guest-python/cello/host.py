"""Host functions an app may call. Inside a component they reach the Cello
host; run natively (tests), they fall back to plain Python."""

import asyncio


def _host():
    try:
        from wit_world.imports import host
    except ImportError:
        return None
    return host


async def sleep(seconds: float) -> None:
    """Waits without blocking the instance: other async requests run meanwhile."""
    host = _host()
    if host is None:
        await asyncio.sleep(seconds)
    else:
        await host.sleep(max(0, round(seconds * 1000)))
