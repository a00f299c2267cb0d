"""Stage 4, domain: the input sizes a model accepts, and solving for them.

``domain`` holds the conditions the analysis found as a queryable set
(``report.domain``); ``solve`` finds sizes that satisfy them.
"""
