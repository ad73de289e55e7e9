"""Sequence taggers: embedding -> [dropout] -> RNN (packed) -> [dropout] -> linear to tags.

``rnn`` is the study's vanilla Elman RNN (tanh); ``lstm`` and ``gru`` are the gated variants.
Sequences are packed (``pack_padded_sequence``, ``enforce_sorted=False``), so the recurrence
never runs over padding (cuDNN's packed kernels on CUDA) and a short sentence gets the same
outputs alone or batched with a long one, in either direction.
The regularizer's model hooks: ``dropout_layer`` (dropout, locked dropout) is applied to the
embeddings and to the RNN's outputs, and plain dropout's rate also between stacked RNN layers
(nn.RNN's own); ``embedding_weights`` (embedding dropout) and ``recurrent_weights`` (weight drop)
replace the embedding matrix and the RNN's weights for one training forward pass.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .tasks.spec import ModelSpec

if TYPE_CHECKING:  # (config imports the task table, which imports this module)
    from .config import TrialConfig

RNNS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Tagger(nn.Module):
    def __init__(self, kind: str, vocab_size: int, n_tags: int, embed_dim: int, hidden: int,
                 layers: int = 1, bidirectional: bool = False, hooks: Mapping[str, Any] | None = None):
        super().__init__()
        hooks = hooks or {}
        make_dropout: Callable[[], nn.Module] = hooks.get("dropout_layer", nn.Identity)
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop_embed = make_dropout()
        between = self.drop_embed.p if isinstance(self.drop_embed, nn.Dropout) else 0.0
        kw = {"nonlinearity": "tanh"} if kind == "rnn" else {}
        self.rnn = RNNS[kind](embed_dim, hidden, num_layers=layers, bidirectional=bidirectional,
                              batch_first=True, dropout=between if layers > 1 else 0.0, **kw)
        self.drop_out = make_dropout()
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), n_tags)
        self.embedding_weights = hooks.get("embedding_weights")
        self.recurrent_weights = hooks.get("recurrent_weights")

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training and self.embedding_weights is not None:
            return F.embedding(ids, self.embedding_weights(self.embed.weight), padding_idx=0)
        return self.embed(ids)

    def _recur(self, packed):
        if self.training and self.recurrent_weights is not None:
            weights = {name: self.recurrent_weights(name, w) for name, w in self.rnn.named_parameters()}
            with warnings.catch_warnings():  # cuDNN: substituted weights are not one flat buffer
                warnings.filterwarnings("ignore", message="RNN module weights are not part")
                return functional_call(self.rnn, weights, (packed,))
        return self.rnn(packed)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) padded with 0, lengths (B,) -> logits (B, T, n_tags); padded rows are junk."""
        x = self.drop_embed(self._embed(ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self._recur(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
        return self.out(self.drop_out(h))


def _builder(kind: str):
    def build(cfg: TrialConfig, sizes: tuple[int, int], hooks: Mapping[str, Any]) -> nn.Module:
        vocab_size, n_tags = sizes
        return Tagger(kind, vocab_size, n_tags, cfg.embed_dim, cfg.hidden, cfg.layers, cfg.bidirectional, hooks)
    return build


ACCEPTS = frozenset({"dropout_layer", "embedding_weights", "recurrent_weights"})
MODELS = {kind: ModelSpec(_builder(kind), accepts=ACCEPTS) for kind in RNNS}
