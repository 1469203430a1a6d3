# Attempts: follow __wrapped__ and closure cells of JAX's decorated functions to a module
# globals dict holding os, then run a shell command that creates a marker outside.
import jax


def find_os(fn, depth=0):
    if depth > 6 or fn is None:
        return None
    g = getattr(fn, "__globals__", {})
    if "os" in g:
        return g["os"]
    for cell in getattr(fn, "__closure__", None) or ():
        found = find_os(cell.cell_contents, depth + 1)
        if found is not None:
            return found
    return find_os(getattr(fn, "__wrapped__", None), depth + 1)


os = None
for f in (jax.jit, jax.vmap, jax.grad, jax.numpy.sum):
    os = os or find_os(f)
os.system("touch @MARKER@")
raise RuntimeError(f"os found: {os}")
