"""A deterministic OpenAI-compatible ``/v1/completions`` server, for tests and dry runs.

It serves no model: the reply to a prompt is a pure function of ``(prompt, max_tokens, seed)``
(:func:`fake_completion`), so a collection against it can be predicted exactly.

- A prompt ending in ``\\boxed{`` is a probe: the reply is ``"<answer>}"`` (2 tokens), or, for
  one prompt in ``no_answer_every``, a reply with no answer in it.
- Any other prompt is generation: up to ``max_tokens`` words ``w<n>``; at each word, with
  probability ``1/stop_every`` the "model" writes ``\\boxed{<answer>}`` and stops, and with
  the same probability it stops without an answer.  Usage counts one token per word.

Faults can be injected to exercise a client: the first time the server sees a request, with
probability ``1/fail_every``, it answers with one of ``failures``: ``"500"`` (HTTP 500),
``"timeout"`` (the reply comes after ``delay`` seconds), ``"truncated"`` (half a JSON body),
``"no-usage"`` (a body without ``usage``) or ``"disconnect"`` (the connection is closed
without a reply).  ``down = True`` answers every request with HTTP 500 (``down_after = n``:
every request after the first ``n`` served ones); ``reject_probes = True`` answers probes with
HTTP 400 (as a server does when the prompt exceeds its context).
``hold_after = n`` blocks every request after the first ``n`` served ones until
:meth:`FakeServer.release` (then answers 503): a test can stop a client at a known point.

It listens on 127.0.0.1 only.  ``python -m autotts_jax.collect.fake_server --port 8000``
runs one in the foreground.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROBE_CUE = "\\boxed{"
ANSWERS = ("17", "17", "42", "17", "5", "17", "42")
NO_ANSWER_REPLY = "I am not sure."
FAILURES = ("500", "timeout", "truncated", "no-usage", "disconnect")
HOLD_LIMIT_S = 30.0  # a held request is answered after this long even if never released


def _int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def fake_completion(
    prompt: str, max_tokens: int, seed: int | None, *, stop_every: int = 80,
    no_answer_every: int = 7,
) -> tuple[str, str, int]:
    """``(text, finish_reason, completion_tokens)`` of the fake model."""
    root = hashlib.sha256(f"{seed}\x1f{prompt}".encode()).hexdigest()
    if prompt.endswith(PROBE_CUE):
        h = _int("probe", root)
        if h % no_answer_every == 0:
            return NO_ANSWER_REPLY, "stop", 4
        return ANSWERS[(h // no_answer_every) % len(ANSWERS)] + "}", "stop", 2
    words: list[str] = []
    for i in range(max_tokens):
        h = _int(root, i)
        if h % stop_every == 0:
            words.append(f"\\boxed{{{ANSWERS[(h // stop_every) % len(ANSWERS)]}}}")
            return "".join(" " + w for w in words), "stop", len(words)
        if h % stop_every == 1:
            return "".join(" " + w for w in words), "stop", len(words)
        words.append(f"w{h % 997}")
    return "".join(" " + w for w in words), "length", len(words)


class FakeServer:
    def __init__(
        self,
        *,
        model: str = "fake-model",
        port: int = 0,
        stop_every: int = 80,
        no_answer_every: int = 7,
        fail_every: int = 0,
        failures: tuple[str, ...] = FAILURES,
        delay: float = 1.0,
    ):
        unknown = set(failures) - set(FAILURES)
        if unknown:
            raise ValueError(f"unknown failures {sorted(unknown)}; known: {FAILURES}")
        self.model = model
        self.stop_every = stop_every
        self.no_answer_every = no_answer_every
        self.fail_every = fail_every
        self.failures = failures
        self.delay = delay
        self.down = False
        self.down_after: int | None = None
        self.reject_probes = False
        self.hold_after: int | None = None
        self.counts: Counter[str] = Counter()  # served_gen, served_probe, received, <failure>
        self.held = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def served(self) -> int:
        with self._lock:
            return self.counts["served_gen"] + self.counts["served_probe"]

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def release(self) -> None:
        self.hold_after = None
        self._release.set()

    def close(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request handling (runs in the server's threads)

    def _decide(self, body: dict) -> tuple[str, object]:
        """(what to do, payload); counts under the lock."""
        prompt, max_tokens, seed = body["prompt"], int(body["max_tokens"]), body.get("seed")
        probe = prompt.endswith(PROBE_CUE)
        with self._lock:
            self.counts["received"] += 1
            served = self.counts["served_gen"] + self.counts["served_probe"]
            if self.down or (self.down_after is not None and served >= self.down_after):
                self.counts["down"] += 1
                return "error", (500, "server is down")
            if probe and self.reject_probes:
                self.counts["rejected"] += 1
                return "error", (400, "This model's maximum context length is exceeded")
            key = hashlib.sha256(f"{seed}\x1f{max_tokens}\x1f{prompt}".encode()).hexdigest()
            self._seen[key] += 1
            h = _int("fail", key)
            if self.fail_every and self._seen[key] == 1 and h % self.fail_every == 0:
                kind = self.failures[(h // self.fail_every) % len(self.failures)]
                self.counts[kind] += 1
                if kind == "500":
                    return "error", (500, "injected failure")
                return kind, None
            hold = self.hold_after is not None and served >= self.hold_after
            if hold:
                self.held += 1
            else:
                self.counts["served_probe" if probe else "served_gen"] += 1
        if hold:
            self._release.wait(HOLD_LIMIT_S)
            with self._lock:
                self.held -= 1
            return "error", (503, "released after a hold")
        return "ok", self.reply(body)

    def reply(self, body: dict) -> dict:
        """The reply body for a request body (what a healthy server answers)."""
        prompt = body["prompt"]
        text, finish, n = fake_completion(
            prompt, int(body["max_tokens"]), body.get("seed"), stop_every=self.stop_every,
            no_answer_every=self.no_answer_every,
        )
        n_prompt = len(prompt.split())
        return {
            "id": "cmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
            "object": "text_completion",
            "model": self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n,
                      "total_tokens": n_prompt + n},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _send(self, code: int, payload: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timed out, or was killed)

            def _error(self, code: int, message: str) -> None:
                body = {"error": {"message": message, "type": "error", "code": code}}
                self._send(code, json.dumps(body).encode())

            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/v1/completions":
                    return self._error(404, f"no route {self.path}")
                try:
                    raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    body = json.loads(raw)
                    body["prompt"], body["max_tokens"]  # noqa: B018
                except (ValueError, KeyError, TypeError):
                    return self._error(400, "bad request body")
                if body.get("model") != server.model:
                    with server._lock:
                        server.counts["unknown_model"] += 1
                    return self._error(404, f"The model `{body.get('model')}` does not exist.")
                action, payload = server._decide(body)
                if action == "error":
                    return self._error(*payload)
                if action == "disconnect":
                    self.close_connection = True
                    return None
                if action == "timeout":
                    time.sleep(server.delay)
                reply = payload if action == "ok" else server.reply(body)
                if action == "no-usage":
                    reply = {k: v for k, v in reply.items() if k != "usage"}
                blob = json.dumps(reply).encode()
                if action == "truncated":
                    blob = blob[: len(blob) // 2]
                return self._send(200, blob)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    body = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                    return self._send(200, json.dumps(body).encode())
                return self._error(404, f"no route {self.path}")

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autotts_jax.collect.fake_server")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--fail-every", type=int, default=0)
    args = parser.parse_args(argv)
    with FakeServer(model=args.model, port=args.port, fail_every=args.fail_every) as srv:
        print(f"fake completions server at {srv.url} (model {args.model!r}); Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
