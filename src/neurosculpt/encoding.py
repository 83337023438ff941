"""Encoders that turn static or audio inputs into time-major ``[T, B, ...]`` network input.

Static inputs ``[B, ...]`` (images, feature vectors, values expected in ``[0, 1]`` for the
spiking codes) use :class:`DirectEncoder`, :class:`RateEncoder` or :class:`LatencyEncoder`.
Waveforms ``[B, S]`` use :class:`AudioEncoder`, which yields log-mel frames as time steps and
can optionally emit send-on-delta spikes (:class:`DeltaEncoder`). :func:`make_encoder` builds
any of them by name.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_steps(steps: int) -> int:
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


class DirectEncoder(nn.Module):
    """Present the same analog input at every step ("direct coding", Rathi & Roy 2021).

    The output is an expanded view of the input (no copy); gradients flow through it.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = _check_steps(steps)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` -> ``[steps, B, ...]``."""
        return x.unsqueeze(0).expand(self.steps, *x.shape)

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class RateEncoder(nn.Module):
    """Bernoulli rate code: each step spikes with ``p = clamp(gain * x, 0, 1)``.

    Uses the global torch RNG, so the spikes are reproducible under ``torch.manual_seed``.
    """

    def __init__(self, steps: int, gain: float = 1.0) -> None:
        super().__init__()
        self.steps = _check_steps(steps)
        self.gain = float(gain)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` -> ``[steps, B, ...]`` of 0/1 spikes in ``x``'s dtype."""
        p = torch.clamp(self.gain * x.detach(), 0.0, 1.0)
        return torch.bernoulli(p.unsqueeze(0).expand(self.steps, *x.shape))

    def extra_repr(self) -> str:
        return f"steps={self.steps}, gain={self.gain:.4g}"


class LatencyEncoder(nn.Module):
    """Time-to-first-spike code: one spike per input, brighter inputs spike earlier.

    Inputs are clamped to ``[0, 1]``; values ``<= threshold`` never spike. Spike times follow
    snnTorch's ``spikegen.latency`` conventions (TTFS coding, Guo et al. 2021, Front. Neurosci.):

    * ``linear=True``: ``t = tau * (1 - x)``;
    * ``linear=False``: ``t = tau * ln(x / (x - threshold))``, the time an RC membrane driven by
      constant current ``x`` needs to charge up to ``threshold``.

    ``tau`` defaults to ``steps - 1`` (so the linear code spans the whole window). Times are
    rounded to the nearest step and clipped into ``[0, steps - 1]``, so every supra-threshold
    input emits exactly one spike.
    """

    def __init__(
        self, steps: int, tau: float | None = None, threshold: float = 0.01, linear: bool = True
    ) -> None:
        super().__init__()
        self.steps = _check_steps(steps)
        self.tau = float(self.steps - 1 if tau is None else tau)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.linear = bool(linear)

    def spike_times(self, x: Tensor) -> Tensor:
        """Integer spike step per input (``-1`` for inputs that never spike)."""
        x = torch.clamp(x.detach(), 0.0, 1.0)
        active = x > self.threshold
        if self.linear:
            t = self.tau * (1.0 - x)
        else:
            safe = torch.where(active, x, torch.ones_like(x))
            t = self.tau * torch.log(safe / (safe - self.threshold))
        t = torch.clamp(torch.round(t), 0, self.steps - 1).long()
        return torch.where(active, t, torch.full_like(t, -1))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, ...]`` -> ``[steps, B, ...]`` with at most one spike per input."""
        times = self.spike_times(x)
        steps = torch.arange(self.steps, device=x.device).view(-1, *([1] * x.dim()))
        return (steps == times.unsqueeze(0)).to(x.dtype if x.is_floating_point() else torch.float)

    def extra_repr(self) -> str:
        return (
            f"steps={self.steps}, tau={self.tau:.4g}, threshold={self.threshold:.4g}, "
            f"linear={self.linear}"
        )


def hz_to_mel(freq: Tensor | float) -> Tensor:
    """HTK mel scale ``2595 * log10(1 + f / 700)`` (Young et al., The HTK Book)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int,
    sample_rate: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """Triangular HTK-mel filterbank ``[n_freqs, n_mels]`` for a one-sided spectrum.

    Filter ``m`` rises from edge ``m`` to centre ``m + 1`` and falls to edge ``m + 2`` of
    ``n_mels + 2`` points equally spaced on the HTK mel scale; peaks are 1 (no Slaney area
    normalisation).
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}")
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(hz_to_mel(f_min).item(), hz_to_mel(f_max).item(), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel_spectrogram(
    wave: Tensor,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop_length: int = 128,
    n_mels: int = 32,
    f_min: float = 0.0,
    f_max: float | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Natural-log mel power spectrogram ``[..., frames, n_mels]`` of ``wave`` ``[B, S]``/``[S]``.

    Hann-windowed centred STFT (zero padded, so ``frames = 1 + S // hop_length``), power
    ``|X|^2``, HTK-mel filterbank (:func:`mel_filterbank`), then ``log(mel + eps)``.
    """
    fb = mel_filterbank(n_fft // 2 + 1, sample_rate, n_mels, f_min, f_max)
    return _log_mel(wave, n_fft, hop_length, fb, eps)


def _log_mel(wave: Tensor, n_fft: int, hop_length: int, filterbank: Tensor, eps: float) -> Tensor:
    """Shared STFT -> power -> mel -> log pipeline (``[..., frames, n_mels]``)."""
    window = torch.hann_window(n_fft, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(
        wave,
        n_fft,
        hop_length=hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.abs().pow(2).transpose(-1, -2)
    return torch.log(power @ filterbank.to(power) + eps)


class AudioEncoder(nn.Module):
    """Waveforms ``[B, S]`` -> log-mel frames as time steps ``[T = n_frames, B, n_mels]``.

    Each waveform is cropped (keeping its start) or zero padded to ``(n_frames - 1) * hop_length``
    samples, so the centred STFT yields exactly ``n_frames`` frames, and, if ``normalize``, scaled
    to unit peak amplitude so that loudness does not shift the log-mel levels. Per-feature
    standardisation (dataset mean/std of each mel band) is left to the caller. With
    ``delta_threshold`` set, the log-mel sequence is turned into ON/OFF spikes
    ``[T, B, 2 * n_mels]`` by :class:`DeltaEncoder` (threshold in natural-log units).
    """

    def __init__(
        self,
        n_frames: int,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop_length: int = 128,
        n_mels: int = 32,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
        normalize: bool = True,
        delta_threshold: float | None = None,
    ) -> None:
        super().__init__()
        self.n_frames = _check_steps(n_frames)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.eps = float(eps)
        self.normalize = bool(normalize)
        self.register_buffer(
            "filterbank",
            mel_filterbank(self.n_fft // 2 + 1, self.sample_rate, n_mels, f_min, f_max),
        )
        self.delta = None if delta_threshold is None else DeltaEncoder(delta_threshold)

    @property
    def steps(self) -> int:
        """Number of time steps produced (one per STFT frame)."""
        return self.n_frames

    @property
    def features(self) -> int:
        """Size of the last output dimension."""
        return self.n_mels if self.delta is None else 2 * self.n_mels

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, S]`` (or ``[S]``) waveforms -> ``[n_frames, B, features]``."""
        wave = wave.unsqueeze(0) if wave.dim() == 1 else wave
        length = (self.n_frames - 1) * self.hop_length
        wave = wave[:, :length]
        wave = nn.functional.pad(wave, (0, length - wave.shape[1]))
        if self.normalize:
            peak = wave.abs().amax(dim=1, keepdim=True)
            wave = wave / torch.clamp(peak, min=self.eps)
        out = _log_mel(wave, self.n_fft, self.hop_length, self.filterbank, self.eps).transpose(0, 1)
        return out if self.delta is None else self.delta(out)

    def extra_repr(self) -> str:
        return (
            f"n_frames={self.n_frames}, sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}"
        )


class DeltaEncoder(nn.Module):
    """Send-on-delta spikes: ON/OFF events when a signal moves ``threshold`` from its last level.

    Like a dynamic vision/audio sensor (Lichtsteiner et al. 2008; Liu et al. 2014): each feature
    keeps a reference level, initialised to its first value. When ``x_t - level >= threshold``
    an ON spike is emitted, when ``level - x_t >= threshold`` an OFF spike; the level then moves
    by the whole number of thresholds crossed (one spike per step at most), so slow drifts are not
    lost. Output ``[T, ..., 2F]``: ON channels first, OFF channels in the last ``F``.
    """

    def __init__(self, threshold: float) -> None:
        super().__init__()
        if not threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, ..., F]`` analog sequence -> ``[T, ..., 2F]`` 0/1 spikes."""
        x = x.detach()
        level = x[0].clone()
        on, off = [], []
        for t in range(x.shape[0]):
            crossed = torch.trunc((x[t] - level) / self.threshold)
            level = level + crossed * self.threshold
            on.append((crossed > 0).to(x.dtype))
            off.append((crossed < 0).to(x.dtype))
        return torch.cat([torch.stack(on), torch.stack(off)], dim=-1)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:.4g}"


ENCODERS: tuple[str, ...] = ("direct", "rate", "latency", "log-mel", "delta")


def make_encoder(name: str, steps: int, **kwargs: object) -> nn.Module:
    """Build an encoder producing ``steps`` time steps by name (see :data:`ENCODERS`).

    ``"log-mel"`` is :class:`AudioEncoder` with ``n_frames=steps``; ``"delta"`` is the same with
    send-on-delta spikes, its ``threshold`` keyword (default 1.0) becoming ``delta_threshold``.
    """
    if name == "direct":
        return DirectEncoder(steps, **kwargs)
    if name == "rate":
        return RateEncoder(steps, **kwargs)
    if name == "latency":
        return LatencyEncoder(steps, **kwargs)
    if name == "log-mel":
        return AudioEncoder(steps, **kwargs)
    if name == "delta":
        threshold = kwargs.pop("threshold", 1.0)
        return AudioEncoder(steps, delta_threshold=threshold, **kwargs)
    raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODERS)}")
