"""``from cello.host import sleep``, the spelling the README and the
examples use: sleeping on the host lives in ``cello.sleeps``."""

from .sleeps import sleep

__all__ = ["sleep"]
