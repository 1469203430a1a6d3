"""Hydra-configured experiments: parity against published figures, evaluation sweeps, reports."""
