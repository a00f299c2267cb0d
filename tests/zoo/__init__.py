"""The model zoo: lazy versions of real architectures, written for the tests.

One module per family; each exposes small factories (``build()`` functions or
classes with default small widths) so that a test can build a fresh model for a
dry run and another for lazyfx under the same seed. The architectures keep
their structure (residual adds, downsample branches, depthwise convolutions,
skip concatenations, attention, ...), not their sizes.
"""
