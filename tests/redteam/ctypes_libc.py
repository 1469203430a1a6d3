# Attempts: load libc with ctypes and call system() directly (no Python-level os/subprocess),
# first with the audit hook on, then after switching it off.
from typing import sys

imp = vars(sys.modules["builtins"])["__import__"]
ctypes = imp("ctypes")
out = []
try:
    out.append(ctypes.CDLL(None).system(b"touch @MARKER@"))
except Exception as exc:  # noqa: BLE001
    out.append(f"hooked: {exc}")
gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
out.append(ctypes.CDLL(None).system(b"touch @MARKER@"))
raise RuntimeError(f"ctypes: {out}")
