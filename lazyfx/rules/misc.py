"""Distances and other small modules: CosineSimilarity, PairwiseDistance, Bilinear, ChannelShuffle."""
