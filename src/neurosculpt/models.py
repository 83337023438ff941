"""Spiking and non-spiking networks of the same topology, built from a small config.

A network is ``encoder -> [plastic layer -> neuron (-> pool)] x L -> plastic output layer ->
readout``. Spiking models run layer by layer over all time steps: every plastic layer sees a
``[T * B, ...]`` tensor (one large matrix product instead of ``T`` small ones), and each neuron
population runs its recurrence over ``[T, B, ...]`` in one call. Non-spiking models are the same
code with ``T = 1`` and ReLU units, so every strategy runs on both.

CLI names: ``snn-mlp``, ``snn-conv``, ``ann-mlp``, ``ann-conv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor, nn

from . import layers as L
from .encoding import DirectEncoder, make_encoder
from .network import Consumer, PlasticNetwork, Units
from .neurons import LI, make_neuron
from .validation import unknown_name

MODELS = ("snn-mlp", "snn-conv", "ann-mlp", "ann-conv")
READOUTS = ("membrane", "spikes")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network (shapes after growth come from the checkpoint)."""

    kind: str = "snn-mlp"
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (16, 32)
    steps: int = 10
    encoder: str = "direct"
    neuron: str = "lif"
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "zero"
    surrogate: str = "fast-sigmoid"
    slope: float | None = None
    learn_beta: bool = False
    learn_threshold: bool = False
    readout: str = "membrane"
    readout_beta: float = 0.9
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise unknown_name("model", self.kind, MODELS)
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; valid: {', '.join(READOUTS)}")
        # ``--model-param hidden=400`` parses to an int: one layer
        self.hidden = _widths(self.hidden)
        self.channels = _widths(self.channels)
        for key in ("hidden", "channels"):
            if any(w < 1 for w in getattr(self, key)):
                raise ValueError(f"{key} = {list(getattr(self, key))}: every layer needs at "
                                 "least one unit")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    @property
    def spiking(self) -> bool:
        return self.kind.startswith("snn")

    @property
    def conv(self) -> bool:
        return self.kind.endswith("conv")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)


def _widths(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


class SequenceEncoder(nn.Module):
    """Present a feature sequence ``[B, F, M]`` over ``F`` time steps: ``[F, B, M]``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(0, 1)


class SingleStep(nn.Module):
    """Non-spiking input: one time step holding the whole (flattened for sequences) input."""

    def __init__(self, flatten: bool) -> None:
        super().__init__()
        self.flatten = flatten

    def forward(self, x: Tensor) -> Tensor:
        return (x.flatten(1) if self.flatten else x).unsqueeze(0)


class ReLUUnits(nn.Module):
    """Non-spiking counterpart of a neuron population (acts on ``[T, B, ...]``)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


class Network(PlasticNetwork):
    """A feed-forward network of plastic layers, spiking or not: the built-in
    :class:`~neurosculpt.network.PlasticNetwork`.

    ``record_activity`` makes the forward pass keep each hidden population's output
    ``[T, B, ...]`` (spikes or ReLU activations) in ``self.activity``, for plasticity signals
    and energy accounting.
    """

    def __init__(self, config: ModelConfig, input_shape: tuple[int, ...], n_outputs: int,
                 sequence: bool = False) -> None:
        super().__init__()
        self.config = config
        self.input_shape = tuple(input_shape)
        self.sequence = sequence
        if config.conv and (sequence or len(input_shape) != 3):
            raise ValueError(
                f"{config.kind} needs image input [C, H, W]; this benchmark gives "
                f"{'sequences' if sequence else 'shape ' + str(tuple(input_shape))}: "
                "use snn-mlp or ann-mlp"
            )
        self.encoder = self._make_encoder()
        widths_in, self.n_conv, spatial = self._plan(input_shape)
        blocks: list[L.PlasticLayer] = []
        n_in = widths_in
        for c in config.channels if config.conv else ():
            blocks.append(L.PlasticConv2d(n_in, c))
            n_in = c
        # flatten factor between the last conv and the first linear layer
        self.flatten_factor = spatial if config.conv else 1
        n_in = n_in * self.flatten_factor
        for h in config.hidden:
            blocks.append(L.PlasticLinear(n_in, h))
            n_in = h
        blocks.append(L.PlasticLinear(n_in, n_outputs))
        self.layers = nn.ModuleList(blocks)
        self.neurons = nn.ModuleList(self._make_neurons() for _ in blocks[:-1])
        self.pool = nn.AvgPool2d(2)
        self.readout = LI(beta=config.readout_beta) if config.spiking else None
        if config.spiking and config.readout == "spikes":
            self.output_neurons = self._make_neurons()

    # --- construction ---------------------------------------------------------------------------
    def _make_encoder(self) -> nn.Module:
        cfg = self.config
        if not cfg.spiking:
            return SingleStep(flatten=self.sequence)
        if self.sequence:
            return SequenceEncoder()
        return make_encoder(cfg.encoder, cfg.steps)

    def _make_neurons(self) -> nn.Module:
        cfg = self.config
        if not cfg.spiking:
            return ReLUUnits()
        return make_neuron(
            cfg.neuron, beta=cfg.beta, threshold=cfg.threshold, reset=cfg.reset,
            surrogate=cfg.surrogate, slope=cfg.slope, learn_beta=cfg.learn_beta,
            learn_threshold=cfg.learn_threshold,
        )

    def _plan(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Input width of the first layer, number of conv layers, spatial size after convs."""
        cfg = self.config
        if cfg.conv:
            c, h, w = input_shape
            for _ in cfg.channels:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"input {input_shape} too small for {len(cfg.channels)} pools")
            return c, len(cfg.channels), h * w
        if self.sequence and cfg.spiking:
            return int(input_shape[-1]), 0, 1
        n = 1
        for d in input_shape:
            n *= int(d)
        return n, 0, 1

    # --- the PlasticNetwork interface -----------------------------------------------------------
    @property
    def plastic_layers(self) -> list[L.PlasticLayer]:
        return list(self.layers)

    @property
    def spiking(self) -> bool:  # type: ignore[override]
        return self.config.spiking

    def units(self, layer: int) -> Units:
        """Each hidden layer feeds the next; the last convolution feeds the first linear layer
        through the flatten, ``H * W`` inputs per channel."""
        width = self.flatten_factor if layer == self.n_conv - 1 else 1
        return Units(consumers=(Consumer(layer + 1, width),))

    def initial_widths(self) -> list[int]:
        """The configured widths (not the current tensors): the same after growth, compaction
        and resume."""
        cfg = self.config
        return [*(cfg.channels if cfg.conv else ()), *cfg.hidden]

    # --- forward --------------------------------------------------------------------------------
    @property
    def constant_input(self) -> bool:
        """Direct coding: the input, hence the first layer's current, is the same at every step,
        so :meth:`forward` computes that current once and presents it ``steps`` times."""
        return isinstance(self.encoder, DirectEncoder) and not self.sequence

    def _flat(self, h: Tensor, layer: int) -> Tensor:
        return h.flatten(1) if layer == self.n_conv else h

    def forward(self, x: Tensor, encoded: bool = False) -> Tensor:
        """Class scores ``[B, outputs]`` of input ``x`` ``[B, ...]``, or of input already encoded
        ``[T, B, ...]`` (``encoded=True``: spikes from a sensor or another encoder, what a NIR
        graph consumes) which skips the model's encoder."""
        if encoded and x.dim() < 3:
            raise ValueError(f"encoded input must be time-major [T, B, ...], got shape "
                             f"{tuple(x.shape)}")
        if self.constant_input and not encoded:
            batch = x.shape[0]
            first = self.layers[0](self._flat(x, 0))
            steps = self.encoder.steps
            current = first.unsqueeze(0).expand(steps, *first.shape)
        else:
            h = x if encoded else self.encoder(x)
            steps, batch = h.shape[:2]  # the encoder's time axis comes first
            h = self._flat(h.reshape(steps * batch, *h.shape[2:]), 0)
            current = self.layers[0](h).unflatten(0, (steps, batch))
        self.activity = []
        for i, neurons in enumerate(self.neurons):
            h = neurons(current)
            if self.record_activity:
                self.activity.append(h)
            h = h.reshape(steps * batch, *h.shape[2:])
            if i < self.n_conv:
                h = self._flat(self.pool(h), i + 1)
            current = self.layers[i + 1](h).unflatten(0, (steps, batch))
        if self.readout is None:
            return current.mean(0)
        if self.config.readout == "spikes":
            return self.output_neurons(current).sum(0)
        return self.readout(current).mean(0)


def build_model(config: ModelConfig | dict | str, input_shape: tuple[int, ...], n_outputs: int,
                sequence: bool = False) -> Network:
    """Build a network for inputs of ``input_shape`` (without batch) and ``n_outputs`` classes."""
    if isinstance(config, str):
        config = ModelConfig(kind=config)
    elif isinstance(config, dict):
        unknown = set(config) - set(ModelConfig.keys())
        if unknown:
            raise ValueError(
                f"unknown model option(s) {sorted(unknown)}; valid: {', '.join(ModelConfig.keys())}"
            )
        config = ModelConfig(**config)
    return Network(config, input_shape, n_outputs, sequence=sequence)
