"""The word-level LSTM language model of the PTB experiments.

The paper's Table 7 lists 20K parameters, which cannot hold a 10K-word
vocabulary. We follow the Critical Gradients code that the paper builds on:
one LSTM layer, 64-d embeddings, 128 hidden units, no dropout, untied input
and output embeddings (about 2.0M parameters with PTB's 10K words); see the
README for the training settings (batch 420, BPTT 35, clipping 0.25).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LSTMLanguageModel(nn.Module):
    """``forward(tokens [T, B], hidden) -> (logits [T, B, V], hidden)``."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            if hidden_dim != embedding_dim:
                raise ValueError("invalid model.tie_weights: needs hidden_dim == embedding_dim")
            self.decoder.weight = self.embedding.weight
        self.num_layers, self.hidden_dim = num_layers, hidden_dim

    def init_hidden(self, batch_size: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        shape = (self.num_layers, batch_size, self.hidden_dim)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, tokens: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, hidden = self.lstm(self.drop(self.embedding(tokens)), hidden)
        return self.decoder(self.drop(output)), hidden
