# Attempts: read a function's __globals__ with a match class pattern (no attribute syntax, no
# getattr), reach builtins.open from there and write a marker outside the sandbox.
import math


def helper():
    return math.pi


match helper:
    case object(__globals__=g):
        g["__builtins__"]["open"]("@MARKER@", "w").write("escaped")
raise RuntimeError("match ran")
