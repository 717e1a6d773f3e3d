"""C-ECHO SCP: the Verification Service Class (PS3.4 A.4, PS3.7 9.1.5)."""

from __future__ import annotations

import logging

from pynetdicom.events import Event

from dimse.errors import SUCCESS

logger = logging.getLogger(__name__)


def handle_echo(event: Event) -> int:
    """Answer a C-ECHO request with Success (PS3.4 A.4.2)."""
    logger.debug("C-ECHO from %s", event.assoc.requestor.ae_title)
    return SUCCESS
