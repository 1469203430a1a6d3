"""Running controller code nobody has vetted: the bubblewrap sandbox that hosts it, the worker
process it starts inside (``python -m autotts_jax.untrusted.worker``) and the traces that worker
distils from a candidate's episodes.

Loading a module file and its static checks are the engine's (:mod:`autotts_jax.engine.loader`,
:mod:`autotts_jax.engine.static`): a trusted file is imported like a built-in controller.  This
package sits above the controllers (the worker warms up with one) and below the experiments
(``evaluate`` replays an untrusted module file here) and the explorer (every candidate).
"""
