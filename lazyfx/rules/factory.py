"""Tensor factories with symbolic sizes: zeros/ones/empty/full/arange/randn/rand/randint, *_like, new_*."""
