"""Resampling: Upsample/F.interpolate, PixelShuffle/PixelUnshuffle, Fold/Unfold."""
