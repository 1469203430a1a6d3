"""Proposer backends: where candidate source comes from.

* ``openai`` -- any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp,
  ollama, hosted APIs) over plain ``urllib``: base URL, model, API key from an environment
  variable, temperature, a per-candidate seed, a timeout, and the retries of
  :mod:`autotts_jax.utils.http` (timeouts, connection errors, 408/429/5xx; ``Retry-After``
  honoured, else exponential backoff with jitter).
* ``command`` -- an external agent CLI: the prompt on stdin, the answer on stdout
  (``claude -p``, ``codex exec -``, a script), run in a fresh temporary directory that holds
  only the prompt (``prompt.md``), in its own process group, killed at the timeout.  It runs
  as the user, with the user's environment (it needs its API key): without ``isolate`` it can
  read and write whatever the user can.  With ``isolate=true`` it runs under bubblewrap in a
  mount namespace that shows only the system directories, ``/etc``, a private ``/tmp``, the
  prompt directory and the search split's stores (read-only), and ``isolate_binds``; its
  network is kept (``--share-net``) and so is its environment.
* ``replay`` -- the responses recorded in an earlier run's history, for reproducing a run.

The ``evolve`` explorer needs no proposer (see :mod:`autotts_jax.explorer.evolve`).  Every
failure raises :class:`ProposerError`; the loop records it as a rejected candidate.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autotts_jax.errors import AutoTTSError
from autotts_jax.utils import http

SYSTEM_PROMPT = (
    "You write test-time-scaling controllers for a JAX replay simulator. Answer with one "
    "complete Python module in a single ```python code block, and nothing that is not needed."
)


class ProposerError(AutoTTSError):
    """The proposer gave no usable response (after its retries)."""


def extract_code(text: str) -> str | None:
    """The candidate module in a chat reply: the last fenced block that defines CONTROLLER
    (else the longest fenced block); an unfenced reply that defines CONTROLLER is taken whole."""
    blocks = re.findall(r"```[ \t]*(?:python|py|python3)?[ \t]*\r?\n(.*?)```", text, re.S)
    with_controller = [b for b in blocks if re.search(r"^CONTROLLER\s*[:=]", b, re.M)]
    if with_controller:
        return with_controller[-1].strip() + "\n"
    if blocks:
        return max(blocks, key=len).strip() + "\n"
    if re.search(r"^CONTROLLER\s*[:=]", text, re.M):
        return text.strip() + "\n"
    return None


class OpenAIProposer:
    name = "openai"

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.base_url = str(cfg.get("base_url") or "").rstrip("/")
        if not self.base_url:
            raise AutoTTSError("explorer.base_url: give the endpoint, e.g. "
                               "explorer.base_url=http://127.0.0.1:8000/v1")
        if not cfg.get("model"):
            raise AutoTTSError("explorer.model: give the model name")
        self.model = str(cfg["model"])
        self.key_env = str(cfg.get("api_key_env") or "")
        self.temperature = float(cfg.get("temperature", 0.7))
        self.seed = cfg.get("seed")
        self.timeout = float(cfg.get("timeout_s", 300))
        # Jitter from the run's seed: a re-run waits as long as the run it repeats.
        self.policy = http.Backoff(int(cfg.get("retries", 3)), float(cfg.get("backoff_s", 2.0)),
                                   60.0, random.Random(self.seed))
        self.max_tokens = cfg.get("max_tokens")
        self.system = str(cfg.get("system_prompt") or SYSTEM_PROMPT)

    def _body(self, prompt: str, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": self.system},
                         {"role": "user", "content": prompt}],
            "temperature": self.temperature,
        }
        if seed is not None:
            body["seed"] = int(seed)
        if self.max_tokens:
            body["max_tokens"] = int(self.max_tokens)
        return body

    def propose(self, prompt: str, *, round: int, candidate: int, seed: int) -> str:
        url = f"{self.base_url}/chat/completions"
        per_seed = None if self.seed is None else int(self.seed) + seed
        data = json.dumps(self._body(prompt, per_seed)).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env) if self.key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"

        def attempt() -> str:
            reply = http.post(url, data, headers, timeout=self.timeout)
            try:
                return _content(json.loads(reply.decode("utf-8")))
            except (ValueError, KeyError) as exc:
                raise ProposerError(f"malformed reply from {url}: {exc}") from None

        try:
            return http.with_retries(attempt, self.policy)
        except http.HTTPRejected as exc:
            raise ProposerError(f"HTTP {exc.status} from {url} (not retried): "
                                f"{http.snippet(exc.body, 300)}") from None
        except http.RetriesExhausted as exc:
            raise ProposerError(f"no reply after {exc.attempts} attempts: {exc.last} "
                                f"from {url}") from None


def _content(payload: Mapping[str, Any]) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"no choices[0].message.content in {str(payload)[:200]}") from None
    if not isinstance(content, str) or not content.strip():
        raise ValueError("empty message content")
    return content


class CommandProposer:
    name = "command"

    def __init__(self, cfg: Mapping[str, Any], search_stores: Sequence[str | Path] = ()) -> None:
        self.command = str(cfg.get("command") or "")
        if not self.command.strip():
            raise AutoTTSError("explorer.command: give the agent command, e.g. "
                               "explorer.command='claude -p'")
        self.timeout = float(cfg.get("timeout_s", 900))
        self.isolate = bool(cfg.get("isolate", False))
        self.binds = [str(b) for b in (cfg.get("isolate_binds") or [])]
        self.stores = [str(Path(p).resolve()) for p in search_stores]
        if self.isolate and shutil.which("bwrap") is None:
            raise AutoTTSError("explorer.isolate=true needs bubblewrap (bwrap), which is not "
                               "installed (e.g. apt-get install bubblewrap)")

    def argv(self, cwd: str) -> list[str]:
        """The process to start: ``/bin/sh -c COMMAND``, under bwrap when isolated."""
        shell = ["/bin/sh", "-c", self.command]
        if not self.isolate:
            return shell
        return [*isolate_argv(cwd, self.stores, self.binds), *shell]

    def propose(self, prompt: str, *, round: int, candidate: int, seed: int) -> str:
        env = dict(os.environ, AUTOTTS_ROUND=str(round), AUTOTTS_CANDIDATE=str(candidate),
                   AUTOTTS_SEED=str(seed))
        with tempfile.TemporaryDirectory(prefix="autotts-agent-") as cwd:
            Path(cwd, "prompt.md").write_text(prompt, encoding="utf-8")
            proc = subprocess.Popen(
                self.argv(cwd), cwd=cwd, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
            try:
                out, err = proc.communicate(prompt.encode("utf-8"), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.communicate()
                raise ProposerError(f"command timed out after {self.timeout:g}s (its process "
                                    "group was killed)") from None
        if proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ProposerError(f"command exited with status {proc.returncode}"
                                + (": " + " | ".join(tail) if tail else ""))
        text = out.decode("utf-8", "replace")
        if not text.strip():
            raise ProposerError("command printed nothing on stdout")
        return text


def isolate_argv(cwd: str, stores: Sequence[str], binds: Sequence[str]) -> list[str]:
    """bwrap's arguments for an isolated agent: its own mount, PID, IPC and UTS namespaces,
    the network and the environment kept (the agent talks to its API with its key).

    Visible: ``/usr`` and the ``/bin``, ``/lib*`` links, ``/etc`` (DNS, certificates), a fresh
    ``/proc`` and ``/dev``, a private ``/tmp``, the prompt directory and the search stores
    (read-only), and each of ``binds`` (read-only).  Not visible: the checkout, its
    trajectories (held-out stores included), the user's home, ``shared/``, other temporary
    directories.  As root, every capability is dropped.
    """
    from autotts_jax.untrusted.sandbox import system_mounts

    argv = ["bwrap", "--unshare-all", "--share-net", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    argv += system_mounts()
    argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
             "--tmpfs", "/tmp"]
    for b in binds:
        b = str(Path(b).expanduser())
        argv += ["--ro-bind-try", b, b]
    for store in stores:
        argv += ["--ro-bind", store, store]
    argv += ["--ro-bind", cwd, cwd, "--chdir", cwd, "--"]
    return argv


class ReplayProposer:
    name = "replay"

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.root = Path(str(cfg.get("from_dir") or ""))
        if not (self.root / "rounds").is_dir():
            raise AutoTTSError(f"explorer.from_dir: {self.root} holds no discovery history "
                               "(no rounds/ folder)")

    def propose(self, prompt: str, *, round: int, candidate: int, seed: int) -> str:
        path = self.root / "rounds" / f"r{round:04d}" / f"c{candidate:02d}" / "response.txt"
        if not path.is_file():
            raise ProposerError(f"replay: no recorded response {path}")
        return path.read_text(encoding="utf-8")


def make_proposer(cfg: Mapping[str, Any], search_stores: Sequence[str | Path] = ()):
    """The proposer named by ``cfg``; ``search_stores`` are what an isolated command sees."""
    kind = str(cfg.get("name") or "")
    if kind == "openai":
        return OpenAIProposer(cfg)
    if kind == "command":
        return CommandProposer(cfg, search_stores)
    if kind == "replay":
        return ReplayProposer(cfg)
    raise AutoTTSError(f"explorer.name: unknown proposer {kind!r} "
                       "(openai, command, replay or evolve)")
