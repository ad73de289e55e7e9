"""Sequence taggers: embedding -> [dropout] -> RNN (packed) -> [dropout] -> linear to tags.

``rnn`` is the study's vanilla Elman RNN (tanh); ``lstm`` and ``gru`` are the gated variants.
Sequences are packed (``pack_padded_sequence``, ``enforce_sorted=False``), so the recurrence
never runs over padding (cuDNN's packed kernels on CUDA) and a short sentence gets the same
outputs alone or batched with a long one, in either direction.
Dropout (``cfg.dropout_rate``: 0 unless the regularizer is ``dropout``/``l2_dropout``) is applied to
the embeddings, to the RNN's outputs, and between stacked RNN layers.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import TrialConfig

RNNS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Tagger(nn.Module):
    def __init__(self, kind: str, vocab_size: int, n_tags: int, embed_dim: int, hidden: int,
                 layers: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop_embed = nn.Dropout(dropout)
        kw = {"nonlinearity": "tanh"} if kind == "rnn" else {}
        self.rnn = RNNS[kind](embed_dim, hidden, num_layers=layers, bidirectional=bidirectional,
                              batch_first=True, dropout=dropout if layers > 1 else 0.0, **kw)
        self.drop_out = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), n_tags)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) padded with 0, lengths (B,) -> logits (B, T, n_tags); padded rows are junk."""
        x = self.drop_embed(self.embed(ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.rnn(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
        return self.out(self.drop_out(h))


def build_tagger(cfg: TrialConfig, vocab_size: int, n_tags: int) -> nn.Module:
    if cfg.model not in RNNS:
        raise ValueError(f"model: unknown tagger {cfg.model!r}; allowed: {', '.join(RNNS)}")
    return Tagger(cfg.model, vocab_size, n_tags, cfg.embed_dim, cfg.hidden, cfg.layers,
                  cfg.bidirectional, cfg.dropout_rate)
