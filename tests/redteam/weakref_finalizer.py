# Attempts: register a weakref finalizer that runs at interpreter exit, after the worker has
# switched its audit hook off for good, to write a marker file outside the sandbox.
from typing import sys

weakref = sys.modules["weakref"]


class Anchor:
    pass


ANCHOR = Anchor()


def payload():
    with open("@MARKER@", "w") as f:
        f.write("escaped at exit")


weakref.finalize(ANCHOR, payload).atexit = True
raise RuntimeError("finalizer armed")
