"""The one retry policy of :mod:`autotts_jax.utils.http`, against a real HTTP server on
127.0.0.1: which failures are retried, ``Retry-After`` (seconds and HTTP dates, capped),
seeded jitter, and that the completion client and the chat proposer both follow it."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autotts_jax.collect.client import CompletionClient, RequestRejected, RetriesExhausted
from autotts_jax.explorer.proposers import OpenAIProposer, ProposerError
from autotts_jax.utils import http

COMPLETION = {"choices": [{"text": " 42", "finish_reason": "stop"}],
              "usage": {"completion_tokens": 2}}
CHAT = {"choices": [{"message": {"content": "```python\nCONTROLLER = 1\n```"}}]}


class Scripted:
    """Answers POSTs from a script, one entry per request (the last one repeats):
    ``(status, headers, body)``, ``"drop"`` (close without a reply) or ``("slow", s)``."""

    def __init__(self, *script):
        self.script = list(script)
        self.seen = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                step = outer.script[min(outer.seen, len(outer.script) - 1)]
                outer.seen += 1
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if step[0] == "slow":
                    time.sleep(step[1])
                    step = (200, {}, COMPLETION)
                status, headers, body = step
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _post(srv, policy, waits):
    return http.with_retries(
        lambda: http.post(srv.url + "/completions", b"{}", {}, timeout=5.0), policy,
        sleep=waits.append)


@pytest.mark.parametrize("status,retried", [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (599, True),
    (400, False), (401, False), (404, False), (409, False), (413, False), (425, False),
])
def test_which_statuses_are_retried(status, retried):
    assert http.retryable_status(status) is retried


def test_retry_after_seconds_dates_and_caps():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert http.parse_retry_after("7", cap=60) == 7.0
    assert http.parse_retry_after("3600", cap=60) == 60.0
    assert http.parse_retry_after(date, cap=60, now=now) == pytest.approx(30.0)
    assert http.parse_retry_after(date, cap=10, now=now) == 10.0
    assert http.parse_retry_after(email.utils.formatdate(now - 5, usegmt=True), cap=60,
                                  now=now) == 0.0
    for junk in (None, "", "soon", "-3", "1.5e3"):
        assert http.parse_retry_after(junk, cap=60) is None


def test_backoff_is_exponential_capped_and_seeded():
    failure = http.Transient("http_503", "busy")
    a = http.Backoff(retries=8, backoff=1.0, max_backoff=10.0, rng=random.Random(5))
    b = http.Backoff(retries=8, backoff=1.0, max_backoff=10.0, rng=random.Random(5))
    da = [a.delay(n, failure) for n in range(1, 9)]
    assert da == [b.delay(n, failure) for n in range(1, 9)]
    for n, d in enumerate(da, start=1):
        base = min(10.0, 2.0 ** (n - 1))
        assert 0.5 * base <= d <= base
    # the server's wish replaces backoff and jitter, within the cap
    assert a.delay(1, http.Transient("http_429", "slow down", 3.0)) == 3.0
    assert a.delay(1, http.Transient("http_429", "slow down", 99.0)) == 10.0


def test_transient_failures_are_retried_with_the_seeded_schedule():
    script = [(503, {}, b"busy"), "drop", (500, {}, b"oops"), (200, {}, COMPLETION)]
    waits: list[float] = []
    with Scripted(*script) as srv:
        body = _post(srv, http.Backoff(5, 0.5, 60.0, random.Random(1)), waits)
        assert json.loads(body) == COMPLETION and srv.seen == 4
    ref = http.Backoff(5, 0.5, 60.0, random.Random(1))
    assert waits == [ref.delay(n, http.Transient("x", "x")) for n in (1, 2, 3)]


@pytest.mark.parametrize("header,expected", [("2", 2.0), ("86400", 30.0)])
def test_retry_after_in_seconds_is_honoured_and_capped(header, expected):
    waits: list[float] = []
    with Scripted((429, {"Retry-After": header}, b"slow down"), (200, {}, COMPLETION)) as srv:
        _post(srv, http.Backoff(3, 0.01, 30.0, random.Random(0)), waits)
    assert waits == [expected]


def test_retry_after_as_an_http_date_is_honoured():
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    waits: list[float] = []
    with Scripted((503, {"Retry-After": when}, b""), (200, {}, COMPLETION)) as srv:
        _post(srv, http.Backoff(3, 0.01, 60.0, random.Random(0)), waits)
    assert len(waits) == 1 and 17.0 <= waits[0] <= 20.0


def test_other_statuses_are_rejected_at_once():
    waits: list[float] = []
    with Scripted((404, {}, b"no such model"), (200, {}, COMPLETION)) as srv:
        with pytest.raises(http.HTTPRejected, match="HTTP 404: no such model") as info:
            _post(srv, http.Backoff(3, 0.01, 60.0, random.Random(0)), waits)
        assert srv.seen == 1
    assert info.value.status == 404 and waits == []


def test_retries_run_out_with_the_last_failure():
    waits: list[float] = []
    with Scripted((502, {}, b"bad gateway")) as srv:
        with pytest.raises(http.RetriesExhausted, match="gave up after 3 attempts") as info:
            _post(srv, http.Backoff(2, 0.01, 60.0, random.Random(0)), waits)
        assert srv.seen == 3
    assert info.value.last.kind == "http_502" and len(waits) == 2


def test_timeouts_and_refused_connections_are_transient():
    with Scripted(("slow", 2.0)) as srv:
        with pytest.raises(http.Transient) as info:
            http.post(srv.url + "/completions", b"{}", {}, timeout=0.2)
    assert info.value.kind == "timeout"
    with pytest.raises(http.Transient) as info:
        http.post("http://127.0.0.1:9/v1/completions", b"{}", {}, timeout=2.0)
    assert info.value.kind == "connection"


def test_the_completion_client_follows_the_policy():
    waits: list[float] = []
    script = [(429, {"Retry-After": "4"}, b""), (409, {}, b"conflict")]
    with Scripted(*script) as srv:
        client = CompletionClient(srv.url, "m", retries=3, backoff=0.01, sleep=waits.append,
                                  rng=random.Random(0))
        with pytest.raises(RequestRejected, match=r"HTTP 409 \(not retried\): conflict"):
            client.complete("q", max_tokens=4, temperature=0.0)
    assert waits == [4.0]
    assert client.stats["http_429"] == 1 and client.stats["retries"] == 1
    with Scripted((500, {}, b"down")) as srv:
        client = CompletionClient(srv.url, "m", retries=1, backoff=0.01, sleep=waits.append)
        with pytest.raises(RetriesExhausted, match="gave up after 2 attempts; last: HTTP 500"):
            client.complete("q", max_tokens=4, temperature=0.0)


def test_the_chat_proposer_follows_the_policy():
    cfg = {"model": "m", "retries": 2, "backoff_s": 0.01, "seed": 3}
    with Scripted((503, {"Retry-After": "0"}, b""), (200, {}, CHAT)) as srv:
        p = OpenAIProposer({**cfg, "base_url": srv.url})
        assert "CONTROLLER" in p.propose("x", round=0, candidate=0, seed=0)
        assert srv.seen == 2
    with Scripted((409, {}, b"conflict"), (200, {}, CHAT)) as srv:
        p = OpenAIProposer({**cfg, "base_url": srv.url})
        with pytest.raises(ProposerError, match=r"HTTP 409 .*not retried"):
            p.propose("x", round=0, candidate=0, seed=0)
        assert srv.seen == 1
