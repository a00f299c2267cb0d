import os

import torch
from hypothesis import HealthCheck, settings

# The tests run tiny tensors, for which thread start-up costs more than it saves (the
# Transformer cases run twice as fast on one thread).
torch.set_num_threads(1)

# CI runs derandomized (a red build is reproducible); locally examples vary run to run.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
