"""The progress bar of a run (tqdm), or none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class _NoBar:
    def set_description(self, _):
        pass

    def update(self, _):
        pass

    def close(self):
        pass


def progress_bar(jobs: Sequence[Any], enabled: bool):
    """One tick per job; a bar that does nothing when not ``enabled``."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=len(jobs), unit="job", dynamic_ncols=True, leave=True)
