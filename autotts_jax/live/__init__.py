"""Run a controller live: the same controller module that replay evaluates drives a real
OpenAI-compatible server (:func:`run_live`, one episode: :func:`run_episode`)."""

from autotts_jax.live.episode import LiveEffects, LiveEpisode, LiveQuestion, run_episode
from autotts_jax.live.runner import run_live

__all__ = ["LiveEffects", "LiveEpisode", "LiveQuestion", "run_episode", "run_live"]
