import math

import pytest
import torch

from neurosculpt.encoding import (
    ENCODERS,
    AudioEncoder,
    DeltaEncoder,
    DirectEncoder,
    LatencyEncoder,
    RateEncoder,
    hz_to_mel,
    log_mel_spectrogram,
    make_encoder,
    mel_filterbank,
    mel_to_hz,
)

# --- static encoders ----------------------------------------------------------------------------


def test_direct_repeats_input_and_passes_gradients():
    torch.manual_seed(4)
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    out = DirectEncoder(5)(x)
    assert out.shape == (5, 3, 1, 4, 4)
    assert all(torch.equal(out[t], x) for t in range(5))
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 5.0))


def test_rate_firing_rate_tracks_intensity():
    torch.manual_seed(0)
    intensity = torch.linspace(0, 1, 11)
    x = intensity.repeat(20, 1)
    spikes = RateEncoder(500)(x)
    assert spikes.shape == (500, 20, 11)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean(dim=(0, 1))
    # 10,000 Bernoulli draws per intensity: standard error <= 0.005.
    torch.testing.assert_close(rate, intensity, atol=0.02, rtol=0)
    assert rate[0] == 0 and rate[-1] == 1


def test_rate_is_seeded_and_gain_clamps():
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    first = RateEncoder(8)(x)
    torch.manual_seed(1)
    assert torch.equal(RateEncoder(8)(x), first)
    assert RateEncoder(50, gain=4.0)(torch.full((2, 2), 0.3)).mean() == 1.0


def test_latency_brighter_earlier_one_spike_each():
    x = torch.tensor([[0.0, 0.005, 0.02, 0.3, 0.6, 1.0]])
    for linear in (True, False):
        enc = LatencyEncoder(20, linear=linear)
        spikes = enc(x)
        assert spikes.shape == (20, 1, 6)
        counts = spikes.sum(0)[0]
        assert counts.tolist() == [0, 0, 1, 1, 1, 1]
        first = spikes.argmax(0)[0, 2:]
        assert (first[1:] <= first[:-1]).all()
    times = LatencyEncoder(20).spike_times(x)[0]
    # Linear code with tau = steps - 1 = 19: t = round(19 * (1 - x)).
    assert times.tolist() == [-1, -1, 19, 13, 8, 0]
    log_times = LatencyEncoder(20, tau=5.0, linear=False).spike_times(x)[0]
    expected = [round(5.0 * math.log(v / (v - 0.01))) for v in (0.02, 0.3, 0.6, 1.0)]
    assert log_times[2:].tolist() == expected


def test_latency_clips_late_spikes_into_window():
    enc = LatencyEncoder(4, tau=100.0)
    spikes = enc(torch.tensor([[0.5, 0.9]]))
    assert spikes.sum(0).tolist() == [[1.0, 1.0]]
    assert spikes[-1].tolist() == [[1.0, 1.0]]


# --- audio ----------------------------------------------------------------------------------


def test_mel_scale_roundtrip_and_filterbank():
    assert hz_to_mel(1000.0).item() == pytest.approx(1000.0, abs=0.1)
    assert mel_to_hz(hz_to_mel(3210.0)).item() == pytest.approx(3210.0)
    fb = mel_filterbank(129, 8000, 32)
    assert fb.shape == (129, 32)
    assert (fb >= 0).all() and fb.max() <= 1.0
    assert (fb.sum(0) > 0).all()
    # Filter centres increase with the filter index.
    assert (fb.argmax(0).diff() >= 0).all()


def test_log_mel_of_sine_peaks_in_the_right_bin():
    sr, n_mels, k = 8000, 32, 17
    centres = mel_to_hz(torch.linspace(0, hz_to_mel(sr / 2).item(), n_mels + 2))[1:-1]
    freq = centres[k].item()
    t = torch.arange(4000) / sr
    wave = torch.sin(2 * math.pi * freq * t)
    mel = log_mel_spectrogram(wave, sample_rate=sr, n_mels=n_mels)
    assert mel.shape == (1 + 4000 // 128, n_mels)
    assert mel[5:-5].mean(0).argmax().item() == k
    batched = log_mel_spectrogram(torch.stack([wave, 0.5 * wave]), sample_rate=sr)
    torch.testing.assert_close(batched[0], mel)
    # Halving the amplitude lowers the log power by log(4) in the loud bin.
    diff = (batched[0] - batched[1])[5:-5, k]
    torch.testing.assert_close(diff, torch.full_like(diff, math.log(4.0)), atol=1e-3, rtol=0)


def test_audio_encoder_fixed_frames_crop_and_normalise():
    torch.manual_seed(2)
    enc = AudioEncoder(n_frames=12, n_mels=16)
    assert enc.steps == 12 and enc.features == 16
    short, long = torch.randn(3, 500), torch.randn(3, 4000)
    assert enc(short).shape == (12, 3, 16)
    assert enc(long).shape == (12, 3, 16)
    assert enc(torch.randn(700)).shape == (12, 1, 16)
    # Samples past (n_frames - 1) * hop_length are cropped away.
    cropped = long[:, : 11 * 128]
    torch.testing.assert_close(enc(long), enc(cropped))
    # Peak normalisation makes the encoding independent of loudness.
    torch.testing.assert_close(enc(3.0 * cropped), enc(cropped), atol=1e-4, rtol=0)
    raw = AudioEncoder(n_frames=12, n_mels=16, normalize=False)
    assert not torch.allclose(raw(3.0 * cropped), raw(cropped))


def test_delta_encoder_ramps():
    # Exact binary arithmetic: x rises 0.125 per step, threshold 0.25 -> ON every second step.
    ramp = (torch.arange(9) * 0.125).view(9, 1, 1)
    spikes = DeltaEncoder(0.25)(ramp)
    assert spikes.shape == (9, 1, 2)
    assert spikes[:, 0, 0].tolist() == [0, 0, 1, 0, 1, 0, 1, 0, 1]
    assert spikes[:, 0, 1].sum() == 0
    down = DeltaEncoder(0.25)(-ramp)
    assert down[..., 0].sum() == 0 and torch.equal(down[..., 1], spikes[..., 0])


def test_delta_level_moves_by_whole_thresholds():
    # A jump of 3.5 thresholds gives one spike and moves the level to 3; holding gives none;
    # reaching 4.0 crosses the next level; falling to 2.9 crosses back below 3.
    x = torch.tensor([0.0, 3.5, 3.5, 3.9, 4.0, 2.9]).view(6, 1)
    spikes = DeltaEncoder(1.0)(x)
    assert spikes[:, 0].tolist() == [0, 1, 0, 0, 1, 0]
    assert spikes[:, 1].tolist() == [0, 0, 0, 0, 0, 1]


def test_delta_audio_encoder_from_factory():
    enc = make_encoder("delta", 10, threshold=0.5, n_mels=8)
    assert enc.features == 16
    torch.manual_seed(3)
    out = enc(torch.randn(2, 2000))
    assert out.shape == (10, 2, 16)
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.sum() > 0


# --- factory ------------------------------------------------------------------------------------


def test_make_encoder():
    assert ENCODERS == ("direct", "rate", "latency", "log-mel", "delta")
    for name, cls in [
        ("direct", DirectEncoder),
        ("rate", RateEncoder),
        ("latency", LatencyEncoder),
        ("log-mel", AudioEncoder),
    ]:
        enc = make_encoder(name, 7)
        assert type(enc) is cls and enc.steps == 7
    assert make_encoder("rate", 3, gain=0.5).gain == 0.5
    with pytest.raises(ValueError, match="latency"):
        make_encoder("burst", 4)
    with pytest.raises(ValueError):
        DirectEncoder(0)
    with pytest.raises(ValueError):
        DeltaEncoder(0.0)
