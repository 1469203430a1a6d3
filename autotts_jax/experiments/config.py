"""Structured configs (dataclasses in Hydra's ConfigStore): a typo in an override is an error
that names the key, not a silently ignored setting."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ParityConfig:
    reference: str = MISSING  # a results CSV (upstream or paper-table format)
    trajectories: str = "${autotts.trajectories:}"
    seeds: int = 100  # shuffle seeds 0..seeds-1, as upstream
    cost_model: str = "reference"
    out: str = "${hydra:runtime.output_dir}"


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="parity_schema", node=ParityConfig)
