"""Canned candidate modules and helpers shared by the explorer tests (tests/test_explorer_*)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# JAX's persistent compilation cache for the processes the tests start (sandbox children, CLI
# runs): the same candidate compiles once per machine instead of once per test.
JAX_CACHE = Path(tempfile.gettempdir()) / f"autotts-jax-test-cache-{os.getuid()}"


def use_jax_cache(monkeypatch) -> None:
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE))


# A small valid controller: one full read per round, stop when the beta-majority confidence of
# the reads is high, or at a read budget; both knobs rise with beta.
VALID = '''\
"""Adaptive reads: one full read per round; stop when confident, at the read budget, or when
the branches run out."""

from autotts_jax.engine.protocol import Controller
from autotts_jax.engine.votes import pool_stats


def _params(config):
    b = min(1.0, max(0.0, float(config["beta"])))
    return {"max_reads": max(2, round(2 + 62 * b)), "threshold": round(0.8 + 0.19 * b, 4)}


def init(env, params, fx):
    return env, ()


def step(env, cstate, params, fx):
    before = env.opened
    env = fx.full_read(env, 1)
    winner, _, _, conf = pool_stats(env)
    env = fx.stop(env, winner, "exhausted", when=env.opened == before)
    confident = (env.pool_size >= 2) & (conf > params["threshold"])
    env = fx.stop(env, winner, "confident", when=confident)
    env = fx.stop(env, winner, "budget", when=env.opened >= params["max_reads"])
    return env, cstate


CONTROLLER = Controller(
    name="adaptive_reads", aliases=(), defaults={"beta": 0.5}, make_params=_params,
    max_slots=lambda c: _params(c)["max_reads"], init=init, step=step,
    stop_reasons=("confident", "budget", "exhausted"),
)
'''

# The same controller with its numbers declared as tunable knobs (autotts_jax.engine.knobs).
TUNABLE = VALID.replace(
    "from autotts_jax.engine.protocol import Controller\n",
    "from autotts_jax.engine.knobs import Knob, knob_values\n"
    "from autotts_jax.engine.protocol import Controller\n",
).replace(
    """def _params(config):
    b = min(1.0, max(0.0, float(config["beta"])))
    return {"max_reads": max(2, round(2 + 62 * b)), "threshold": round(0.8 + 0.19 * b, 4)}
""",
    """KNOBS = {
    "max_reads": Knob("int", 2, 64, 1, 2, 62),  # reads at most this many branches
    "threshold": Knob("float", 0.5, 0.999, 1, 0.8, 0.19),  # stop above this confidence
}


def _params(config):
    return knob_values(KNOBS, config["beta"])
""")
assert "KNOBS" in TUNABLE

SYNTAX_ERROR = VALID.replace("def step(env, cstate, params, fx):",
                             "def step(env, cstate, params, fx:")

FORBIDDEN_IMPORT = "import os\n\n" + VALID.replace(
    "    return env, ()", "    os.system('echo hi')\n    return env, ()")

# A Python loop that never ends while init is traced.
TRACE_LOOP = VALID.replace("    return env, ()",
                           "    while True:\n        pass\n    return env, ()")

# Answers far outside any question's answer ids.
OUT_OF_RANGE = VALID.replace('env = fx.stop(env, winner, "confident"',
                             'env = fx.stop(env, winner + 100000, "confident"').replace(
    'env = fx.stop(env, winner, "budget"', 'env = fx.stop(env, winner + 100000, "budget"')

# An endless loop in make_params (host side, before any tracing).
PARAMS_LOOP = VALID.replace('    b = min(1.0', '    while True:\n        pass\n    b = min(1.0')


def fenced(source: str, before: str = "Here is my controller.") -> str:
    return f"{before}\n\n```python\n{source}```\n\nIt should do well."


class ChatServer:
    """A tiny OpenAI-compatible chat-completions server on 127.0.0.1 with canned replies.

    ``fail_first`` requests are answered 503 first (to exercise retries).  Every request body
    and its headers are recorded.
    """

    def __init__(self, replies: list[str], fail_first: int = 0) -> None:
        self.replies = list(replies)
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                i = len(server.requests) - 1
                text = server.replies[i % len(server.replies)]
                payload = json.dumps({
                    "id": f"chat-{i}", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def read_index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines() if line]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]
