# Attempts: reach the sys module through an allowed module (``from typing import sys``), then
# os via sys.modules, and run a shell command that creates a marker file outside the sandbox.
from typing import sys

os = sys.modules["os"]
status = os.system("touch @MARKER@")
raise RuntimeError(f"system returned {status}")
