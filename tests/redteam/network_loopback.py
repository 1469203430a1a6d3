# Attempts: connect to a service on 127.0.0.1 (a local model server, a metadata endpoint) with
# the audit hook switched off, and send it data.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
socket = vars(sys.modules["builtins"])["__import__"]("socket")
try:
    s = socket.create_connection(("127.0.0.1", int("@PORT@")), timeout=3)
    s.sendall(b"escaped")
    result = "connected"
except OSError as exc:
    result = f"{type(exc).__name__}: {exc}"
raise RuntimeError(f"network: {result}")
