"""Stage 0, core: the vocabulary every later stage shares.

Symbolic sizes and formulas (``symbolic``), what is known about them
(``constraints``), the checks rules state (``checks``), abstract values
(``values``), diagnostic codes and source locations (``diagnostics``), the one
registry of rules and resolvers (``registry``) and the differences between
torch releases (``compat``). Nothing here imports a later stage.

``VERSION`` is lazyfx's version (``lazyfx.__version__``), here so that any stage can name it
(the cache of ``lazyfx check`` keys on it, SARIF output reports it).
"""

VERSION = "0.1.0"
