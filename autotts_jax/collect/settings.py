"""What a collection collects (:class:`CollectSettings`, tied to its checkpoint) and how it
reaches the server (:class:`Connection`, free to change on a resume).

Kept apart from the collection loop because live runs (:mod:`autotts_jax.live`) send the same
requests under the same settings without collecting anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autotts_jax.collect.answers import get_extractor, get_normalizer
from autotts_jax.errors import AutoTTSError

DEFAULT_PROMPT_TEMPLATE = (
    "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{}.\n"
)
DEFAULT_PROBE_SUFFIX = (
    "\n\nI have to stop reasoning here and commit to an answer.\n\n**Final Answer**\n\\boxed{"
)
PLACEHOLDER = "{question}"
_RESERVED = frozenset({"model", "prompt", "max_tokens", "temperature", "seed", "n", "stream"})


@dataclass(frozen=True)
class CollectSettings:
    """Everything that decides what is collected (a checkpoint is tied to these)."""

    model: str
    branches: int = 8
    probe_freq: int = 500
    max_tokens: int = 16384
    max_probes: int = 128
    temperature: float = 0.6
    seed: int | None = 0
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    probe_suffix: str = DEFAULT_PROBE_SUFFIX
    probe_max_tokens: int = 32
    probe_temperature: float = 0.0
    extractor: str = "boxed-or-last-number"
    normalize: str = "math"
    extra_body: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("branches", "probe_freq", "max_tokens", "max_probes", "probe_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AutoTTSError(f"collect: {name} must be a positive integer, got {value!r}")
        for name in ("temperature", "probe_temperature"):
            if not getattr(self, name) >= 0:
                raise AutoTTSError(f"collect: {name} must be >= 0, got {getattr(self, name)!r}")
        if not self.model:
            raise AutoTTSError("collect: a model name is required")
        if PLACEHOLDER not in self.prompt_template:
            raise AutoTTSError(f"collect: the prompt template has no {PLACEHOLDER} placeholder")
        get_extractor(self.extractor)
        get_normalizer(self.normalize)
        clash = sorted(_RESERVED & set(self.extra_body))
        if clash:
            raise AutoTTSError(f"collect: extra request fields may not set {', '.join(clash)}")

    @property
    def depth(self) -> int:
        """The most intervals a branch can have."""
        return min(self.max_probes, math.ceil(self.max_tokens / self.probe_freq))

    def prompt(self, question: str) -> str:
        return self.prompt_template.replace(PLACEHOLDER, question)


@dataclass(frozen=True)
class Connection:
    """How to talk to the server (free to change between a run and its resume)."""

    base_url: str
    concurrency: int = 8
    timeout: float = 300.0
    retries: int = 5
    backoff: float = 1.0
    api_key: str | None = None


def cost_estimate(settings: CollectSettings, n_questions: int) -> dict[str, int]:
    """Upper bounds: every branch runs to ``depth`` intervals and probes after each."""
    d = settings.depth
    branches = n_questions * settings.branches
    return {
        "branches": branches,
        "depth": d,
        "max_requests": branches * 2 * d,
        "max_completion_tokens": branches
        * (min(settings.max_tokens, d * settings.probe_freq) + d * settings.probe_max_tokens),
    }
