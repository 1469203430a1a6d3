# Attempts: write a file outside the sandbox with an ndarray method (``dump`` pickles the
# array to any path) instead of open().
import numpy as np

np.zeros(3).dump("@MARKER@")
raise RuntimeError("dump done")
