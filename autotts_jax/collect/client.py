"""A small client for the OpenAI-compatible ``/v1/completions`` endpoint (standard library only).

vLLM, SGLang and llama.cpp's server all speak it.  One call sends one prompt and returns the
generated text, the ``finish_reason`` and ``usage.completion_tokens``.

Failures are sorted in two kinds:

- *transient* -- connection refused or reset, a timeout, HTTP 408/429/5xx, a body that is not
  JSON (e.g. truncated), a reply without ``choices[0].text``, ``finish_reason`` or
  ``usage.completion_tokens``, or with ``finish_reason`` ``"abort"``/``"error"``: retried up to
  ``retries`` times with exponential backoff (``backoff * 2**attempt`` seconds, at most
  ``max_backoff``, times a random factor in [0.5, 1]), then :class:`RetriesExhausted`;
- *rejected* -- any other HTTP 4xx (a wrong model name, a prompt longer than the context):
  :class:`RequestRejected` at once, with the server's message.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autotts_jax.errors import AutoTTSError


class CompletionError(AutoTTSError):
    """A completion request that did not produce a usable reply."""


class RequestRejected(CompletionError):
    """The server refused the request (HTTP 4xx other than 408/429); retrying will not help."""


class RetriesExhausted(CompletionError):
    """A transient failure persisted through every retry."""


class _Transient(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    completion_tokens: int
    prompt_tokens: int = 0  # usage.prompt_tokens when the server reports it, else 0


def _snippet(raw: bytes, limit: int = 200) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_reply(raw: bytes) -> Completion:
    """The first choice of a ``/v1/completions`` reply body; raises ``_Transient`` if malformed."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Transient("bad_json", f"reply is not valid JSON ({exc}): {_snippet(raw)}") from None
    try:
        choice = body["choices"][0]
        text = choice["text"]
        finish = choice["finish_reason"]
        tokens = body["usage"]["completion_tokens"]
    except (KeyError, IndexError, TypeError):
        raise _Transient(
            "malformed_reply",
            "reply lacks choices[0].text, choices[0].finish_reason or usage.completion_tokens: "
            + _snippet(raw),
        ) from None
    if not isinstance(text, str):
        raise _Transient("malformed_reply", f"choices[0].text is not a string: {_snippet(raw)}")
    if not isinstance(finish, str) or finish in ("abort", "error"):
        raise _Transient("malformed_reply", f"finish_reason {finish!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise _Transient("malformed_reply", f"usage.completion_tokens {tokens!r}")
    prompt = body["usage"].get("prompt_tokens") if isinstance(body["usage"], dict) else None
    if isinstance(prompt, bool) or not isinstance(prompt, int) or prompt < 0:
        prompt = 0
    return Completion(text, finish, tokens, prompt)


class CompletionClient:
    """Thread-safe; ``stats`` counts attempts and failures by kind."""

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
    ):
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
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
        req = urllib.request.Request(
            self.url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            if exc.code in (408, 429) or exc.code >= 500:
                raise _Transient(f"http_{exc.code}", f"HTTP {exc.code}: {_snippet(body)}") from None
            raise RequestRejected(
                f"{self.url}: HTTP {exc.code} (not retried): {_snippet(body)}"
            ) from None
        except TimeoutError:
            raise _Transient("timeout", f"no reply within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Transient("timeout", f"no reply within {self.timeout:g} s") from None
            raise _Transient("connection", f"cannot reach the server ({exc.reason})") from None
        except (http.client.HTTPException, OSError) as exc:
            detail = f"connection failed ({type(exc).__name__}: {exc})"
            raise _Transient("connection", detail) from None

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
        last: _Transient | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                self._sleep(delay * random.uniform(0.5, 1.0))
            self._count("attempts")
            try:
                reply = parse_reply(self._post(payload))
            except _Transient as exc:
                self._count(exc.kind)
                last = exc
                continue
            self._count("replies")
            return reply
        assert last is not None
        raise RetriesExhausted(
            f"{self.url}: gave up after {self.retries + 1} attempts; last: {last}"
        )
