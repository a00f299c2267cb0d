"""An LSTM text classifier: ``nn.Embedding``, a bidirectional ``nn.LSTM(batch_first=True)``
(an eager module), and a LazyLinear head either on the last time step or on the mean-
and max-pooled outputs."""

from __future__ import annotations

import torch
import torch.nn as nn


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int = 40, embed: int = 8, hidden: int = 6, layers: int = 2,
                 num_classes: int = 3, pooling: str = "last"):
        super().__init__()
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, bidirectional=True, dropout=0.1)
        self.dropout = nn.Dropout(0.2)
        self.hidden = nn.LazyLinear(2 * hidden)
        self.head = nn.LazyLinear(num_classes)

    def forward(self, tokens):
        out, _ = self.lstm(self.embedding(tokens))  # out: (B, T, 2*hidden); _: (h, c)
        if self.pooling == "last":
            features = out[:, -1]
        else:
            features = torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=-1)
        return self.head(torch.relu(self.hidden(self.dropout(features))))
