"""Recurrent layers: nn.RNN, nn.LSTM, nn.GRU (and their cells)."""
