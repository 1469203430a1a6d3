# Attempts: switch the audit hook off, then write files outside the private directory: into
# the checkout (beside the autotts_jax package), into /tmp, into the real home, and the marker.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
os = sys.modules["os"]
pkg = os.path.dirname(sys.modules["autotts_jax"].__file__)
results = []
for path in (f"{pkg}/redteam_marker.txt", f"{os.path.dirname(pkg)}/redteam_marker.txt",
             "/tmp/autotts-redteam-marker.txt", "/root/autotts-redteam-marker.txt",
             "@MARKER@"):
    try:
        with open(path, "w") as f:
            f.write("escaped")
        results.append(f"wrote {path}")
    except OSError as exc:
        results.append(f"{path}: {exc}")
raise RuntimeError(f"writes: {results}")
