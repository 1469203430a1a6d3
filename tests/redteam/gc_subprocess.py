# Attempts: switch the audit hook off through gc.get_objects(), import subprocess with
# builtins.__import__, and start a shell that creates a marker outside the sandbox.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
subprocess = vars(sys.modules["builtins"])["__import__"]("subprocess")
res = subprocess.run(["/bin/sh", "-c", "mkdir -p $(dirname @MARKER@) && touch @MARKER@ && echo ok"],
                     capture_output=True, text=True)
raise RuntimeError(f"shell: {res.returncode} {res.stdout} {res.stderr}")
