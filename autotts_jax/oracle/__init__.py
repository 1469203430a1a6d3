"""Pure-Python test oracle: the upstream AutoTTS environment and controllers, one episode at a time.

Plain Python and NumPy (SciPy for the Beta confidence), no JAX: slow but obviously faithful to
``REFERENCE_SEMANTICS.md``, so the JAX engine can be checked against it episode by episode and
both against the published numbers.

It imports nothing from the rest of the package on purpose, the engine least of all (no shared
vote counting, permutations, cost rules or result invariants): a reference that reused the
engine's code would repeat its mistakes instead of catching them.  Its lowest place in the
layer order (``autotts_jax/__init__.py``) records that.
"""

from autotts_jax.oracle.controllers import (
    CMC,
    SC,
    ASCMethod,
    ESCMethod,
    OptimalController,
    Parallel_Probe,
    cmc_schedule,
    conf,
    majority,
    vote_stats,
)
from autotts_jax.oracle.env import (
    OracleBranch,
    OracleQuestion,
    QuestionView,
    RoundRow,
    n_questions,
    permutation,
    question_view,
)
from autotts_jax.oracle.evaluate import evaluate_oracle

__all__ = [
    "CMC",
    "SC",
    "ASCMethod",
    "ESCMethod",
    "OptimalController",
    "OracleBranch",
    "OracleQuestion",
    "Parallel_Probe",
    "QuestionView",
    "RoundRow",
    "cmc_schedule",
    "conf",
    "evaluate_oracle",
    "majority",
    "n_questions",
    "permutation",
    "question_view",
    "vote_stats",
]
