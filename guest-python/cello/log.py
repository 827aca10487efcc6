"""Log lines for the host's structured log.

    from cello import log

    log.info("order %s placed", order_id)

Inside a component every line goes to the host's log, tagged with the
component and the route and request id of the call; natively it
is the standard ``logging`` module's ``app`` logger. Python's own
``logging`` calls reach the host the same way.
"""

import logging

logger = logging.getLogger("app")

debug = logger.debug
info = logger.info
warning = logger.warning
error = logger.error
exception = logger.exception
