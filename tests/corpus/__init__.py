"""A corpus of NumPyro example models, ported to ppl by changing only their imports.

Each module is NumPyro code (from NumPyro's ``examples/`` or the Statistical Rethinking ports)
whose NumPyro import line is replaced by the line marked ``# PORT: was `...```; the model bodies
are NumPyro's, character for character.  ``benchmarks/numpyro_reference.py`` undoes the marked
lines and runs NumPyro on the same models and data; ``tests/test_numpyro_corpus.py`` runs ours.
Every module defines ``CASES``: name -> (model, data function returning (args, kwargs)).
"""

MODULES = ("baseball", "eight_schools", "funnel", "regression", "rethinking", "ordinal", "logistic")
