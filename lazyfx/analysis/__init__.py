"""Stage 3, analysis: trace the model with symbolic inputs and propagate shapes.

The tracer (``trace``) builds the torch.fx graph and drives the propagator
(``propagate``), which gives every node its abstract value as soon as the
node exists, from the rules (stage 2) or, for what no rule covers, from the
fallbacks in ``fallback/``. ``resolve`` collects each lazy module's
constructor arguments and parameter shapes. ``hooks``, ``randomness``,
``counts`` and ``valueflow`` handle what a forward does besides computing
shapes (module hooks, random draws, data-dependent counts, initializations
that read values).
"""
