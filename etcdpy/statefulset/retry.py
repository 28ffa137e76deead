"""Bounded retries with backoff, each attempt logged: the commands never wait forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class GaveUp(Exception):
    """The deadline passed; the message says what was awaited and the last problem."""


class NotYet(Exception):
    """Raised by an attempt that should be retried."""


def retry(
    what: str,
    attempt: Callable[[], T],
    timeout: float,
    log: Any,
    first_delay: float = 0.2,
    max_delay: float = 3.0,
) -> T:
    """Calls ``attempt`` until it returns, retrying on NotYet until ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except NotYet as err:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GaveUp(f"gave up waiting for {what} after {timeout:g}s: {err}") from None
            log.info("retrying", waiting_for=what, attempt=tries, problem=str(err),
                     retry_in=round(min(delay, left), 2))  # fmt: skip
            time.sleep(min(delay, left))
            delay = min(delay * 2, max_delay)
