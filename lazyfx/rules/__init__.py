"""Shape rules by family. Importing this package registers every rule in
:data:`lazyfx.registry.RULES`."""

from lazyfx.rules import (  # noqa: F401
    activation,
    conv,
    elementwise,
    embedding,
    index,
    linear,
    norm,
    pool,
    views,
)
