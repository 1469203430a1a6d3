"""POSTing to a model server with retries: one policy for every client in the package.

The completion client of ``collect`` and live runs and the chat proposer of ``discover`` talk
to the same kind of server (vLLM, SGLang, llama.cpp, a hosted API), so they share one answer
to "is this failure worth another try, and when":

- **retried**: HTTP 408 (request timeout), 429 (rate limited) and every 5xx, a timeout, and a
  connection that could not be made or broke mid-reply;
- **not retried**: every other HTTP status (:class:`HTTPRejected`: a wrong model name, a
  prompt beyond the context -- asking again gives the same answer);
- **when**: the server's ``Retry-After`` if it sent one (delay-seconds or an HTTP date),
  capped at ``max_backoff``; otherwise exponential backoff ``backoff * 2**(n - 1)`` seconds
  before retry ``n``, capped at ``max_backoff``, times a jitter factor in [0.5, 1] drawn from
  an explicit ``random.Random`` (so that clients started together do not retry in lockstep,
  and a test with a seeded generator sees the same delays every run).

A caller may add failures of its own (e.g. a reply body it cannot parse) by raising
:class:`Transient` from its attempt function.
"""

from __future__ import annotations

import email.utils
import http.client
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

_T = TypeVar("_T")


class Transient(Exception):
    """A failure worth another attempt; ``kind`` names it for statistics (``http_503``,
    ``timeout``, ``connection``, or the caller's own), ``retry_after`` is the server's wish."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.retry_after = retry_after


class HTTPRejected(Exception):
    """The server answered with a status that another attempt would not change."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {snippet(body)}")
        self.status = status
        self.body = body


class RetriesExhausted(Exception):
    """Every attempt failed transiently; ``last`` is the final failure."""

    def __init__(self, attempts: int, last: Transient):
        super().__init__(f"gave up after {attempts} attempts; last: {last}")
        self.attempts = attempts
        self.last = last


def retryable_status(status: int) -> bool:
    """408, 429 and 5xx: the server may answer differently later."""
    return status in (408, 429) or 500 <= status <= 599


def snippet(raw: bytes, limit: int = 200) -> str:
    """``raw`` as one line of at most ``limit`` characters, for error messages."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP date),
    clamped to ``[0, cap]``; ``None`` when absent or unreadable (then backoff applies)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), cap)


@dataclass(frozen=True)
class Backoff:
    """The retry schedule: ``retries`` more attempts after the first, waits as described in
    the module docstring; ``rng`` draws the jitter."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry: int, failure: Transient) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``failure``."""
        if failure.retry_after is not None:
            return min(failure.retry_after, self.max_backoff)
        base = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return base * self.rng.uniform(0.5, 1.0)


def with_retries(
    attempt: Callable[[], _T],
    policy: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[Transient, float], None] | None = None,
) -> _T:
    """``attempt()`` until it returns, retrying on :class:`Transient` per ``policy``.

    Anything else it raises (a rejection, a bug) propagates at once.  ``on_retry(failure,
    delay)`` is called before each wait.  Raises :class:`RetriesExhausted` after the last try.
    """
    retry = 0
    while True:
        try:
            return attempt()
        except Transient as failure:
            if retry >= policy.retries:
                raise RetriesExhausted(retry + 1, failure) from None
            retry += 1
            delay = policy.delay(retry, failure)
            if on_retry is not None:
                on_retry(failure, delay)
            sleep(delay)


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float,
         max_retry_after: float = 60.0) -> bytes:
    """One POST; returns the reply body.  Raises :class:`Transient` for what is worth another
    try (see the module docstring) and :class:`HTTPRejected` for any other HTTP status."""
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        reply = exc.read() if exc.fp is not None else b""
        if not retryable_status(exc.code):
            raise HTTPRejected(exc.code, reply) from None
        after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None,
                                  cap=max_retry_after)
        raise Transient(f"http_{exc.code}", f"HTTP {exc.code}: {snippet(reply)}",
                        after) from None
    except TimeoutError:
        raise Transient("timeout", f"no reply within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise Transient("timeout", f"no reply within {timeout:g} s") from None
        raise Transient("connection", f"cannot reach the server ({exc.reason})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise Transient("connection",
                        f"connection failed ({type(exc).__name__}: {exc})") from None
