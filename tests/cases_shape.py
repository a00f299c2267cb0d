"""Differential cases (see tests/cases.py for the conventions)."""

from cases import case  # noqa: F401
