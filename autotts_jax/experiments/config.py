"""Structured configs (dataclasses in Hydra's ConfigStore): a typo in an override is an error
that names the key, not a silently ignored setting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class RuntimeConfig:
    """Where JAX runs and caches (top-level keys of every command that simulates).

    ``device``: ``auto`` takes what JAX finds (a GPU when a CUDA jaxlib is installed and sees
    one), ``cpu`` forces the CPU, ``gpu`` says a GPU is expected: the run goes on, with one
    warning, if JAX finds none.  ``jax_cache``: the persistent compilation cache directory;
    empty means ``$AUTOTTS_JAX_CACHE_DIR`` or the user cache directory, ``off`` disables it
    (``autotts_jax/utils/jaxcache.py``).
    """

    device: str = "auto"
    jax_cache: str = ""


@dataclass
class ParityConfig(RuntimeConfig):
    reference: str = MISSING  # a results CSV (upstream or paper-table format)
    trajectories: str = "${autotts.trajectories:}"
    seeds: int = 100  # shuffle seeds 0..seeds-1, as upstream
    cost_model: str = "reference"
    out: str = "${hydra:runtime.output_dir}"


@dataclass
class DataConfig:
    """Which stores: ``model`` and ``benchmark`` are a name, a list of names, or ``all``."""

    model: Any = "all"
    benchmark: Any = "all"
    trajectories: str = "${autotts.trajectories:}"  # <dir>/<model>/<benchmark>.h5


@dataclass
class ControllerConfig:
    """One controller and its beta grid (``conf/controller/<name>.yaml``).

    ``grid`` lists values of ``grid_param`` from the smallest budget to the largest.  When
    ``grid_param`` is ``beta`` the controller takes beta natively; otherwise beta selects a grid
    position: ``beta`` -> ``grid[floor(beta * (len(grid) - 1) + 1/2)]``, so grid point i has
    beta ``i / (len(grid) - 1)``.  ``betas`` null means every grid point.
    """

    name: str = MISSING  # controller name or alias (``get_controller``)
    label: str = ""  # display name in tables and plots
    upstream: str = ""  # upstream class name, for the results file
    params: dict[str, Any] = field(default_factory=dict)  # fixed, on top of the defaults
    grid_param: str = "beta"
    grid: list[Any] = field(default_factory=list)
    betas: list[float] | None = None
    extra: list[dict[str, Any]] = field(default_factory=list)  # further configs, no beta
    # a module file (name ending in .py) runs in the sandbox unless trusted: true
    trusted: bool = False


@dataclass
class BootstrapConfig:
    samples: int = 1000  # resamples of the questions
    seed: int = 0  # jax.random seed: the same seed gives the same intervals
    level: float = 0.95


@dataclass
class EvaluationConfig:
    seeds: int = 100  # shuffle seeds 0..seeds-1, as upstream
    cost_model: str = "reference"
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    # processes that evaluate jobs in parallel; 0 = one per CPU core (at most 4) on CPU, else 1
    workers: int = 0


@dataclass
class OutputConfig:
    dir: str = "${hydra:runtime.output_dir}"
    name: str = "results"  # <dir>/<name>.csv and <dir>/<name>.json
    progress: bool = True  # progress bar over (model, benchmark, controller) jobs
    table: bool = True  # print a short table


@dataclass
class EvaluateConfig(RuntimeConfig):
    data: DataConfig = field(default_factory=DataConfig)
    controller: dict[str, ControllerConfig] = field(default_factory=dict)
    betas: list[float] | None = None  # overrides every selected controller's betas
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


@dataclass
class PlotConfig:
    formats: list[str] = field(default_factory=lambda: ["png", "svg"])
    log_tokens: bool = True  # log-scale token axis
    # methods whose bootstrap CI of accuracy is drawn as a band; [all] for every method, []
    # for none (with ~30 questions the intervals are wide and overlap)
    bands: list[str] = field(default_factory=lambda: ["sc", "cmc"])


@dataclass
class ReportConfig(EvaluateConfig):
    results: list[str] = field(default_factory=list)  # results files/dirs; [] = evaluate now
    out: str = MISSING
    plots: PlotConfig = field(default_factory=PlotConfig)


@dataclass
class CompareConfig:
    """``autotts-jax compare``: the first of ``controllers`` against each of the others."""

    data: DataConfig = field(default_factory=DataConfig)
    controller: dict[str, ControllerConfig] = field(default_factory=dict)  # the config group
    # two or more keys of the controller group or controller module files (.py)
    controllers: list[str] = field(default_factory=lambda: ["cmc", "sc"])
    metrics: list[str] = field(
        default_factory=lambda: ["accuracy", "matched_budget", "token_ratio"])
    # seeds, cost model, workers; bootstrap.samples / seed / level are the paired bootstrap's
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    out: str = MISSING
    progress: bool = True


def register(cs: ConfigStore) -> None:
    """The experiment commands' schemas (``discover``'s are the explorer's own:
    :func:`autotts_jax.explorer.config.register`)."""
    cs.store(name="parity_schema", node=ParityConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="report_schema", node=ReportConfig)
    cs.store(name="compare_schema", node=CompareConfig)
