"""Padding: F.pad and the padding modules (constant, zero, reflection, replication, circular)."""
