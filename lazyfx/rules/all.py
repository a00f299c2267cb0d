"""Every rule family and the lazy-class resolvers, imported so that they register themselves.

``import lazyfx.rules.all`` is how a stage that dispatches on the registry (the analysis,
checkpoint-only materialization, the docs generator) makes sure it is complete.
"""

from lazyfx.rules import (  # noqa: F401
    activation,
    attention,
    compare,
    control,
    conv,
    elementwise,
    embedding,
    factory,
    index,
    join,
    lazy,
    linear,
    misc,
    norm,
    padding,
    pool,
    reduce,
    resample,
    rnn,
    views,
)
