"""Shape rules by family, one module each, and ``lazy``: the built-in lazy classes.

A family registers its rules in :data:`lazyfx.core.registry.RULES` when it is imported;
:mod:`lazyfx.rules.all` imports every family (the analysis does, once).
"""
