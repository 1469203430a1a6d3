"""Structured configs of ``autotts-jax discover`` (registered in Hydra's ConfigStore).

``conf/discover.yaml`` composes :class:`DiscoverConfig` with an ``explorer`` (``evolve``,
``openai``, ``command``, ``replay``: ``conf/explorer/<name>.yaml`` over the schemas below), the
baselines (``controller`` group, as ``evaluate``) and the held-out ``evaluation`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from autotts_jax.experiments.config import ControllerConfig, EvaluationConfig, PlotConfig

BETAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@dataclass
class TuneConfig:
    """The engine's tuner (explorer/tune.py): CEM over each candidate's beta schedules (the
    evolve family's genes; an LLM candidate's ``KNOBS`` table)."""

    population: int = 12  # schedules per generation and candidate
    generations: int = 3  # 0: no tuning (each genome scored as proposed)
    elite: int = 3
    seeds: int = 4  # low-fidelity seeds for tuning (the full `seeds` score the result)
    beta_stride: int = 2  # tune on every 2nd beta of the grid (and the last)
    sigma: float = 0.15  # first generation's spread, fraction of each gene's range
    min_sigma: float = 0.02


@dataclass
class EvolveExplorerConfig:
    name: str = "evolve"
    strategy: str = "evolve"  # evolve (islands + CEM tuning) | random (the chance baseline)
    parents: int = 8  # islands (best genome per structure) that parent the next round
    flip_structure: float = 0.6  # probability that a child gets a new structure
    sigma: float = 0.15  # schedule mutation step, as a fraction of each gene's range
    sigma_up: float = 1.25  # after a round that improved the best score
    sigma_down: float = 0.8  # after a round that did not
    flip: float = 0.3  # probability that a new structure changes two switches, not one
    # Multi-fidelity selection: the confirm_top best genomes (and CMC's) are re-scored on
    # confirm_seeds seeds of the search split; the best of them is exported (0: off).
    confirm_top: int = 4
    confirm_seeds: int = 40


@dataclass
class OpenAIExplorerConfig:
    name: str = "openai"
    base_url: str = MISSING  # e.g. http://127.0.0.1:8000/v1 (vLLM, llama.cpp, ollama, hosted)
    model: str = MISSING
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key ("" = none)
    temperature: float = 0.7
    seed: int | None = 0  # request seed = seed + round * candidates + candidate
    timeout_s: float = 300.0
    retries: int = 3
    backoff_s: float = 2.0  # waits backoff_s * 2**attempt between attempts
    max_tokens: int | None = None
    system_prompt: str = ""


@dataclass
class CommandExplorerConfig:
    name: str = "command"
    command: str = MISSING  # run by /bin/sh: prompt on stdin, answer on stdout
    timeout_s: float = 900.0
    # Run the command in a bwrap mount namespace: system directories, the prompt directory and
    # the search stores (read-only), plus isolate_binds; network and environment kept.
    isolate: bool = False
    isolate_binds: list[str] = field(default_factory=list)  # extra read-only paths (the CLI)


@dataclass
class ReplayExplorerConfig:
    name: str = "replay"
    from_dir: str = MISSING  # a previous run's directory: its recorded responses


@dataclass
class SearchConfig:
    models: Any = "all"  # search backbones (aime24 stores); "all" = every one found


@dataclass
class SandboxConfig:
    wall_s: float = 900.0  # whole candidate run, JIT compilation included
    load_s: float = 60.0  # module + make_params/max_slots for every beta
    trace_s: float = 120.0  # tracing init/step once
    cpu_s: int = 3600  # RLIMIT_CPU of the sandbox process
    memory_mb: int = 8192  # RLIMIT_AS of the sandbox process
    fsize_mb: int = 1024  # RLIMIT_FSIZE: the largest file the sandbox process may write
    nproc: int = 0  # RLIMIT_NPROC when the worker runs as nobody (threads count); 0: 256+4/CPU
    # auto: bubblewrap namespaces when available, else resource limits only (one warning);
    # bwrap: refuse to run without them; none: resource limits and the audit hook only
    containment: str = "auto"
    conformance: bool = True  # run engine.check.check_controller in the sandbox
    determinism: bool = True  # run the first store twice and compare
    # replay in a second sandbox on counterfactual stores (engine.noninterference): a
    # candidate whose decisions change there read what its episodes never observed
    non_interference: bool = True


@dataclass
class PromptConfig:
    history: int = 3  # best candidates shown with curves
    errors: int = 5  # most recent rejections shown with their reasons
    traces: int = 2  # execution traces per digest (0: none)
    trace_rows: int = 24
    examples: bool = True  # the baselines' source as worked examples


@dataclass
class ScoreConfig:
    monotone_tolerance: float = 0.05  # mean tokens may dip this much between neighbour betas
    floor_reads: int = 4  # the score's budget window runs from SC@floor_reads to SC@64


@dataclass
class HeldOutConfig:
    enabled: bool = True
    betas: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0])
    progress: bool = False


@dataclass
class DiscoverConfig:
    explorer: Any = MISSING
    rounds: int = 5
    candidates: int = 6
    out: str = MISSING
    resume: bool = False
    seed: int = 0  # explorer randomness (evolve) and the LLM request seeds
    seeds: int = 10  # search-split shuffle seeds 0..seeds-1 per candidate
    betas: list[float] = field(default_factory=lambda: list(BETAS))
    cost_model: str = "reference"
    max_rounds: int = 1024
    max_branch: int = 64
    trajectories: str = "${autotts.trajectories:}"
    search: SearchConfig = field(default_factory=SearchConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)  # every explorer's candidates
    controller: dict[str, ControllerConfig] = field(default_factory=dict)  # the baselines
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # held-out eval
    heldout: HeldOutConfig = field(default_factory=HeldOutConfig)
    plots: PlotConfig = field(default_factory=PlotConfig)


def register(cs) -> None:
    cs.store(name="discover_schema", node=DiscoverConfig)
    cs.store(group="explorer", name="evolve_schema", node=EvolveExplorerConfig)
    cs.store(group="explorer", name="openai_schema", node=OpenAIExplorerConfig)
    cs.store(group="explorer", name="command_schema", node=CommandExplorerConfig)
    cs.store(group="explorer", name="replay_schema", node=ReplayExplorerConfig)


def default_conf(**overrides: Any) -> dict[str, Any]:
    """The discover config as a plain dict (no Hydra), for the Python API and tests."""
    from dataclasses import asdict

    conf = asdict(DiscoverConfig())
    conf["explorer"] = asdict(EvolveExplorerConfig())
    conf["trajectories"] = None
    conf["out"] = None
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(conf.get(k), dict) and k not in ("controller",
                                                                               "explorer"):
            conf[k] = {**conf[k], **v}
        else:
            conf[k] = v
    if conf["trajectories"] is None:
        from autotts_jax.experiments.paths import TRAJECTORIES

        conf["trajectories"] = str(TRAJECTORIES)
    return conf
