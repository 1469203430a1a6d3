"""A small client for the OpenAI-compatible ``/v1/completions`` endpoint (standard library only).

vLLM, SGLang and llama.cpp's server all speak it.  One call sends one prompt and returns the
generated text, the ``finish_reason`` and ``usage.completion_tokens``.

Failures are sorted in two kinds:

- *transient* -- what :mod:`autotts_jax.utils.http` retries (connection refused or reset, a
  timeout, HTTP 408/429/5xx), and also a body that is not JSON (e.g. truncated), a reply
  without ``choices[0].text``, ``finish_reason`` or ``usage.completion_tokens``, or with
  ``finish_reason`` ``"abort"``/``"error"``: retried up to ``retries`` times with that module's
  backoff (``Retry-After`` honoured, else exponential with jitter), then
  :class:`RetriesExhausted`;
- *rejected* -- any other HTTP 4xx (a wrong model name, a prompt longer than the context):
  :class:`RequestRejected` at once, with the server's message.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.utils import http
from autotts_jax.utils.http import Transient, snippet


class CompletionError(AutoTTSError):
    """A completion request that did not produce a usable reply."""


class RequestRejected(CompletionError):
    """The server refused the request (HTTP 4xx other than 408/429); retrying will not help."""


class RetriesExhausted(CompletionError):
    """A transient failure persisted through every retry."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int = 0  # usage.prompt_tokens when the server reports it, else 0


def parse_reply(raw: bytes) -> Completion:
    """The first choice of a ``/v1/completions`` reply body; raises ``Transient`` if malformed."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Transient("bad_json", f"reply is not valid JSON ({exc}): {snippet(raw)}") from None
    try:
        choice = body["choices"][0]
        text = choice["text"]
        finish = choice["finish_reason"]
        tokens = body["usage"]["completion_tokens"]
    except (KeyError, IndexError, TypeError):
        raise Transient(
            "malformed_reply",
            "reply lacks choices[0].text, choices[0].finish_reason or usage.completion_tokens: "
            + snippet(raw),
        ) from None
    if not isinstance(text, str):
        raise Transient("malformed_reply", f"choices[0].text is not a string: {snippet(raw)}")
    if not isinstance(finish, str) or finish in ("abort", "error"):
        raise Transient("malformed_reply", f"finish_reason {finish!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise Transient("malformed_reply", f"usage.completion_tokens {tokens!r}")
    prompt = body["usage"].get("prompt_tokens") if isinstance(body["usage"], dict) else None
    if isinstance(prompt, bool) or not isinstance(prompt, int) or prompt < 0:
        prompt = 0
    return Completion(text, finish, tokens, prompt)


class CompletionClient:
    """Thread-safe; ``stats`` counts attempts and failures by kind.  ``rng`` draws the backoff
    jitter (seed it for reproducible waits)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout: float = 300.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        api_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.timeout = timeout
        self.policy = http.Backoff(retries, backoff, max_backoff, rng or random.Random())
        self.api_key = api_key
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _post(self, payload: dict) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            return http.post(self.url, json.dumps(payload).encode("utf-8"), headers,
                             timeout=self.timeout, max_retry_after=self.policy.max_backoff)
        except http.HTTPRejected as exc:
            raise RequestRejected(
                f"{self.url}: HTTP {exc.status} (not retried): {snippet(exc.body)}"
            ) from None

    def complete(
        self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None = None
    ) -> Completion:
        payload: dict[str, Any] = {
            **self.extra_body,
            "model": self.model,
            "prompt": prompt,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "n": 1,
            "stream": False,
        }
        if seed is not None:
            payload["seed"] = int(seed)

        def attempt() -> Completion:
            self._count("attempts")
            try:
                reply = parse_reply(self._post(payload))
            except Transient as exc:
                self._count(exc.kind)
                raise
            self._count("replies")
            return reply

        try:
            return http.with_retries(attempt, self.policy, sleep=self._sleep,
                                     on_retry=lambda *_: self._count("retries"))
        except http.RetriesExhausted as exc:
            raise RetriesExhausted(f"{self.url}: {exc}") from None
