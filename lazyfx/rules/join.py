"""Joining and splitting: stack/hstack/vstack, split/chunk/unbind."""
