"""Stage 1, inputs: what the user declares, parsed and checked.

Input specs and size constraints (``spec``), the project's configuration for
``lazyfx check`` (``config``), model targets named as ``module:attr``
(``targets``), and the binding of inputs to forward's parameters (``bind``).
"""
