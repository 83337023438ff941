"""A small transformer encoder for sequence streams, written in plain PyTorch.

Images arrive as sequences of rows (``neurosculpt run --sequence``: Fashion-MNIST as 28 tokens
of 28 features). Each token is embedded by a linear layer, a learned positional embedding is
added, two pre-norm blocks (multi-head self-attention, then a feed-forward network) transform
the sequence, and the mean over tokens goes to a linear classifier.

Only the feed-forward hidden units are plastic: neurosculpt may grow, remove or reinitialise
them (artificial neuroplasticity for transformers, Li, Milling & Schuller 2025), while the
attention layers and the residual width stay whole::

    neurosculpt run -b random-label-fmnist --sequence -m examples/transformer.py:build \\
        -s neuroplastic --tasks 30 --steps 500 --eval-scope current
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurosculpt.adapter import AdaptedNetwork, adapt

PLASTIC = ["blocks.*.ff.0", "blocks.*.ff.2", "head"]
"""The layers neurosculpt makes plastic: each feed-forward pair (the hidden units between them
grow and shrink) and the classifier (its rows are the task heads). The token embedding and the
attention projections stay plain layers, so the residual width and attention stay whole."""


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + ff(norm(x))``."""

    def __init__(self, d_model: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class SequenceTransformer(nn.Module):
    """Token embedding, learned positions, ``blocks`` pre-norm blocks, mean pool, classifier."""

    def __init__(self, tokens: int, features: int, n_outputs: int, d_model: int = 32,
                 heads: int = 4, hidden: int = 64, blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(d_model, heads, hidden) for _ in range(blocks))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


def build(input_shape: tuple[int, ...], n_outputs: int, d_model: int = 32, heads: int = 4,
          hidden: int = 64, blocks: int = 2) -> AdaptedNetwork:
    """neurosculpt's model factory (``--model examples/transformer.py:build``, model
    parameters from ``--model-param``): the transformer for a stream of ``[tokens, features]``
    sequences, with only :data:`PLASTIC` made plastic."""
    if len(input_shape) != 2:
        raise ValueError(f"the transformer reads sequences [tokens, features], got samples of "
                         f"shape {tuple(input_shape)}; present images as rows with --sequence")
    tokens, features = input_shape
    model = SequenceTransformer(tokens, features, n_outputs, d_model, heads, hidden, blocks)
    return adapt(model, input_shape, plastic=PLASTIC)
