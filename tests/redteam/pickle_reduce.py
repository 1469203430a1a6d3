# Attempts: a pickling trick: an object whose __reduce__ names os.system, loaded back with
# pickle.loads, runs a shell command that creates a marker outside the sandbox.
from typing import sys

pickle = sys.modules["pickle"]
os = sys.modules["os"]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch @MARKER@",))


status = pickle.loads(pickle.dumps(Payload()))
raise RuntimeError(f"unpickled: {status}")
