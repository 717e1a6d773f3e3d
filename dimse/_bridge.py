"""Hand coroutines from pynetdicom's threads to the server's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

from dimse.errors import LoopUnavailable

T = TypeVar("T")


class LoopBridge:
    """Runs coroutines on one event loop and waits for them from another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its error).

        Raises ``LoopUnavailable`` when the loop is closed or the work does not
        finish within the DIMSE timeout; the work is then cancelled.
        """
        if self._loop.is_closed():
            coroutine.close()
            raise LoopUnavailable("The server's event loop is closed")
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError as error:
            coroutine.close()
            raise LoopUnavailable(
                f"The server's event loop refused work: {error}"
            ) from None
        try:
            return future.result(self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LoopUnavailable(
                f"The archive did not answer within {self._timeout_s} s "
                "(setting dimse_timeout_s)"
            ) from None
