"""The oracle twin of ``first_finished.py``, written against the oracle's imperative API."""

from __future__ import annotations


class FirstFinished:
    """Open ``width`` branches, then probe each one once per round, in slot order, until one
    finishes; answer the first finisher's final answer."""

    def __init__(self, width: int = 4) -> None:
        self.width = width
        self.stop_reason: str | None = None
        self.rounds = 0

    def solve(self, q):
        slots = []
        for _ in range(self.width):
            try:
                slots.append(q.probe_new()[1])
            except ValueError:  # no more branches
                break
        if not slots:
            self.stop_reason, self.rounds = "no_branches", 0
            return None
        q.new_round()
        self.rounds = 1
        while True:
            finished = [a for a, fin in (q.probe_more(s) for s in slots) if fin]
            q.new_round()
            self.rounds += 1
            if finished:
                self.stop_reason = "finished"
                return finished[0]
