"""Shape rules by family. Importing this package registers every rule in
:data:`lazyfx.core.registry.RULES`."""

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
