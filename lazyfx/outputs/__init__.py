"""Stage 6, outputs: what the user reads and what edits their code.

The report of an analysis (``report``), findings as a linter prints them
(``findings``), the dataflow picture (``graph``) and ``lazyfx fix``'s source
rewrite (``fix``).
"""
