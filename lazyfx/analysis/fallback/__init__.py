"""The fallbacks of propagation, for what no shape rule covers.

``meta``: PyTorch's meta kernels on fake tensors with symbolic sizes, for an
operation without a rule. ``abstract``: abstract execution, a submodule
torch.fx cannot trace run on meta tensors. ``generic``: any lazy module
without a built-in resolver, resolved by running its own initialization.
"""
