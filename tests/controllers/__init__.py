"""Controllers registered for the tests only: they prove that a controller's registry entry
is all the generic tests need (``tests/registry.py`` adds these to the built-ins)."""

from controllers.first_finished import FIRST_FINISHED

TEST_ONLY = (FIRST_FINISHED,)
