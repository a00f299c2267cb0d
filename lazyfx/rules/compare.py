"""Comparison, logical and selection ops: eq/ne/lt/le/gt/ge, logical_*, where, clamp, maximum/minimum."""
