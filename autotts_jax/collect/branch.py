"""One reasoning branch: its state rebuilt from journalled events, and its next request.

A branch alternates a generation of ``probe_freq`` tokens and a probe of the answer so far
until it ends (see :mod:`autotts_jax.collect.collector`).  ``collect`` and live runs share
:class:`BranchState` and :func:`next_event`, so both send the same requests (prompts, probe
suffix, seeds) and read the same answers from them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autotts_jax.collect.answers import NO_ANSWER, answer_from, find_boxed
from autotts_jax.collect.client import CompletionClient, RequestRejected
from autotts_jax.collect.settings import CollectSettings


def request_seed(base: int | None, q: int, b: int, k: int, kind: str) -> int | None:
    """The seed of one request, from ``(base, question, branch, interval, kind)``: a server
    that honours ``seed`` then gives the same trajectories on a re-run."""
    if base is None:
        return None
    digest = hashlib.sha256(f"{base}:{q}:{b}:{k}:{kind}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class BranchState:
    """One branch as far as it was generated and probed (rebuilt from journalled events)."""

    chunks: list[str] = field(default_factory=list)
    tokens: int = 0
    gens: int = 0
    probes: list[str | None] = field(default_factory=list)  # None: a probe not sent
    ended: bool = False
    last_finish: str = ""

    @property
    def complete(self) -> bool:
        return self.ended and len(self.probes) == self.gens

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def apply(self, event: dict, settings: CollectSettings) -> None:
        """Advance by one journalled event; raises ValueError if it does not fit."""
        kind, k = event["e"], event["k"]
        if kind == "gen":
            if self.complete or k != self.gens or len(self.probes) != self.gens:
                raise ValueError(f"generation {k} out of order")
            n = int(event["tokens"])
            self.chunks.append(str(event["text"]))
            self.tokens += n
            self.gens += 1
            self.last_finish = str(event["finish"])
            self.ended = (
                self.last_finish != "length"
                or n < int(event["max_tokens"])
                or self.tokens >= settings.max_tokens
                or self.gens >= settings.max_probes
            )
        elif kind == "probe":
            if k != len(self.probes) or self.gens != k + 1:
                raise ValueError(f"probe {k} out of order")
            answer = event["answer"]
            self.probes.append(None if answer is None else str(answer))
        else:
            raise ValueError(f"unknown event {kind!r}")


def next_event(client: CompletionClient, s: CollectSettings, normalize: Callable[[str], str],
               prompt: str, q: int, b: int, br: BranchState) -> dict:
    """Send the next request of branch ``b`` of question ``q`` (state ``br``, not changed) and
    return its event, to be journalled and applied with :meth:`BranchState.apply`.

    The one place that decides what a branch sends next -- a generation of the next interval,
    or the probe of the interval just generated -- so that ``collect`` and live runs send the
    same requests (prompt, probe suffix, seeds) and read the same answers from them.
    ``prompt_tokens`` is the server's ``usage.prompt_tokens`` (0 when it does not say).
    """
    if len(br.probes) == br.gens:
        k = br.gens
        ask = min(s.probe_freq, s.max_tokens - br.tokens)
        reply = client.complete(
            prompt + br.text, max_tokens=ask, temperature=s.temperature,
            seed=request_seed(s.seed, q, b, k, "gen"),
        )
        return {"e": "gen", "b": b, "k": k, "text": reply.text,
                "tokens": reply.completion_tokens, "finish": reply.finish_reason,
                "max_tokens": ask, "prompt_tokens": reply.prompt_tokens}
    k = len(br.probes)
    event: dict[str, Any] = {"e": "probe", "b": b, "k": k}
    boxed = None
    if br.ended and br.last_finish != "length" and s.extractor != "last-number":
        boxed = find_boxed(br.text)
    if boxed is not None and (answer := normalize(boxed)).strip():
        event.update(answer=answer, via="completion", tokens=0, prompt_tokens=0)
        return event
    try:
        reply = client.complete(
            prompt + br.text + s.probe_suffix, max_tokens=s.probe_max_tokens,
            temperature=s.probe_temperature, seed=request_seed(s.seed, q, b, k, "probe"),
        )
    except RequestRejected as exc:
        # e.g. prompt + suffix beyond the context: no answer at this depth
        event.update(answer=NO_ANSWER, via="rejected", tokens=0, prompt_tokens=0,
                     error=str(exc))
    else:
        answer = answer_from(s.probe_suffix + reply.text, s.extractor, s.normalize)
        event.update(answer=answer, via="request", tokens=reply.completion_tokens,
                     prompt_tokens=reply.prompt_tokens)
    return event
