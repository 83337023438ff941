"""Event-driven inference for pruned spiking MLPs: work follows spikes x live synapses.

A dense forward pass multiplies every weight with every input at every time step, so its cost is
``neurons x neurons x steps`` whatever the network's sparsity. Here each layer keeps only its
live synapses, in compressed sparse column (CSC) form: for input ``j`` the row indices and
weights of the synapses it reaches. At every time step a layer visits only the inputs that are
active (spikes, or nonzero analog values for the first layer) and adds their columns into the
input current (``index_add`` over the active columns), then updates its neurons with the same
LIF dynamics as :func:`neurosculpt.kernels.lif_sequence` (``v = beta*v + I; s = v > thr``; reset)
and hands the list of neurons that spiked to the next layer. This is how event-driven
neuromorphic processors spend their work (Davies et al. 2018, "Loihi", IEEE Micro 38(1)).

With direct coding the input does not change between steps, so the first layer's current is
computed once and reused (an unchanged input sends no new events).

The whole pass runs in a small C library (built on first use with the system compiler, like
:mod:`neurosculpt.kernels`), sample by sample and step by step, which is the streaming setting
(batch size 1) event-driven hardware targets; without a compiler, or with
``NEUROSCULPT_COMPILE=0``, the same algorithm runs with torch ops. Sums are taken in a different
order than a dense matrix product, so currents agree with the dense path to float32 rounding;
spikes are the same unless a membrane lands within rounding of the threshold.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from .encoding import DirectEncoder
from .layers import PlasticLinear
from .models import Network
from .native import NativeLibrary
from .neurons import LIF

_C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One layer's CSC weights: column j's synapses are rows[ptr[j]..ptr[j+1]), vals likewise. */
typedef struct { int64_t n_in, n_out; const int64_t *ptr; const int32_t *rows;
                 const float *vals; const float *bias; } ns_layer;

static inline void ns_add_column(float *restrict cur, const ns_layer *L, int64_t j) {
    const int32_t *restrict r = L->rows;
    const float *restrict w = L->vals;
    for (int64_t k = L->ptr[j]; k < L->ptr[j + 1]; ++k) cur[r[k]] += w[k];
}

static inline void ns_add_scaled(float *restrict cur, const ns_layer *L, int64_t j, float x) {
    const int32_t *restrict r = L->rows;
    const float *restrict w = L->vals;
    for (int64_t k = L->ptr[j]; k < L->ptr[j + 1]; ++k) cur[r[k]] += x * w[k];
}

/* LIF update of n neurons; writes the indices of those that spiked, returns their number. */
static inline int64_t ns_lif(float *restrict v, const float *restrict cur, int64_t n,
                             float beta, float thr, int sub, float rst, int32_t *restrict ev) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; ++i) {
        float x = beta * v[i];
        x = x + cur[i];
        const float h = x - thr;
        if (h > 0) { v[i] = sub ? h : rst; ev[m++] = (int32_t)i; }
        else v[i] = x;
    }
    return m;
}

/* Whole network for B samples of T steps. input: [T or 1, B, n_in] (1 when static). out:
   [B, n_out] mean readout membrane (mode 0) or output spike counts (mode 1). counts: spikes per
   hidden layer summed over samples and steps (may be NULL). Returns 0, or -1 when out of memory. */
int ns_event_forward(int64_t T, int64_t B, int64_t n_layers, const ns_layer *layers,
                     float beta, float thr, int sub, float rst, int mode, float rbeta,
                     const float *input, int static_input, float *out, int64_t *counts) {
    int64_t width = 0, states = 0;
    for (int64_t l = 0; l < n_layers; ++l) {
        if (layers[l].n_out > width) width = layers[l].n_out;
        states += layers[l].n_out;
    }
    const int64_t n0 = layers[0].n_in, n_last = layers[n_layers - 1].n_out;
    float *v = malloc(sizeof(float) * (size_t)states);
    float *cur = malloc(sizeof(float) * (size_t)width);
    float *cur0 = malloc(sizeof(float) * (size_t)layers[0].n_out);
    float *acc = malloc(sizeof(float) * (size_t)n_last);
    int32_t *ev = malloc(sizeof(int32_t) * (size_t)width * 2);
    if (!v || !cur || !cur0 || !acc || !ev) {
        free(v); free(cur); free(cur0); free(acc); free(ev);
        return -1;
    }
    for (int64_t b = 0; b < B; ++b) {
        memset(v, 0, sizeof(float) * (size_t)states);
        memset(acc, 0, sizeof(float) * (size_t)n_last);
        for (int64_t t = 0; t < T; ++t) {
            const ns_layer *L0 = &layers[0];
            if (!static_input || t == 0) {
                const float *x = input + ((static_input ? 0 : t) * B + b) * n0;
                memcpy(cur0, L0->bias, sizeof(float) * (size_t)L0->n_out);
                for (int64_t j = 0; j < n0; ++j)
                    if (x[j] != 0) ns_add_scaled(cur0, L0, j, x[j]);
            }
            int32_t *in_ev = ev, *out_ev = ev + width;
            int64_t n_ev = 0, off = 0;
            for (int64_t l = 0; l < n_layers; ++l) {
                const ns_layer *L = &layers[l];
                const float *c = cur0;
                if (l > 0) {
                    memcpy(cur, L->bias, sizeof(float) * (size_t)L->n_out);
                    for (int64_t e = 0; e < n_ev; ++e) ns_add_column(cur, L, in_ev[e]);
                    c = cur;
                }
                float *vl = v + off;
                off += L->n_out;
                if (l == n_layers - 1 && mode == 0) {
                    for (int64_t i = 0; i < L->n_out; ++i) {
                        float x = rbeta * vl[i];
                        x = x + c[i];
                        vl[i] = x;
                        acc[i] += x;
                    }
                } else {
                    n_ev = ns_lif(vl, c, L->n_out, beta, thr, sub, rst, out_ev);
                    if (l == n_layers - 1) {
                        for (int64_t e = 0; e < n_ev; ++e) acc[out_ev[e]] += 1.0f;
                    } else if (counts) {
                        counts[l] += n_ev;
                    }
                    int32_t *tmp = in_ev; in_ev = out_ev; out_ev = tmp;
                }
            }
        }
        float *o = out + b * n_last;
        for (int64_t i = 0; i < n_last; ++i) o[i] = mode == 0 ? acc[i] / (float)T : acc[i];
    }
    free(v); free(cur); free(cur0); free(acc); free(ev);
    return 0;
}
"""


class _Layer(ctypes.Structure):
    _fields_ = [("n_in", ctypes.c_int64), ("n_out", ctypes.c_int64),
                ("ptr", ctypes.c_void_p), ("rows", ctypes.c_void_p),
                ("vals", ctypes.c_void_p), ("bias", ctypes.c_void_p)]


def _declare(lib: ctypes.CDLL) -> None:
    """Signature of the event-driven pass."""
    i64, f32, cint, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.ns_event_forward.restype = cint
    lib.ns_event_forward.argtypes = [i64, i64, i64, ptr, f32, f32, cint, f32, cint, f32, ptr,
                                     cint, ptr, ptr]


_LIBRARY = NativeLibrary("event", _C_SOURCE, _declare, "event-driven C kernel", "torch ops")


def _csc(weight: Tensor, live: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Column pointers (int64), row indices (int32) and values (float32) of the live synapses."""
    cols = live.t().contiguous()
    col, row = cols.nonzero(as_tuple=True)
    counts = torch.bincount(col, minlength=weight.shape[1])
    ptr = torch.zeros(weight.shape[1] + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(counts, 0)
    vals = weight.t().contiguous()[col, row].float().contiguous()
    return ptr, row.to(torch.int32).contiguous(), vals


class EventDrivenNetwork:
    """Inference-only, event-driven copy of a (pruned) ``snn-mlp`` network or task subnetwork.

    ``EventDrivenNetwork(model, task)(x)`` returns what ``model(x)`` returns with
    ``model.set_task(task)``: mean readout membrane (or output spike counts) ``[B, n_out]``.
    Weights are copied at construction; rebuild after training further.
    """

    def __init__(self, model: Network, task: int | None = None) -> None:
        cfg = model.config
        if not cfg.spiking or cfg.conv:
            raise ValueError(f"event-driven inference supports snn-mlp models, not {cfg.kind}")
        neurons = list(model.neurons) + ([model.output_neurons] if cfg.readout == "spikes" else [])
        first = neurons[0]
        for neuron in neurons:
            if not isinstance(neuron, LIF):
                raise ValueError(f"unsupported neuron {type(neuron).__name__}")
            if (float(neuron.beta), float(neuron.threshold), neuron.reset, neuron.reset_value) != (
                    float(first.beta), float(first.threshold), first.reset, first.reset_value):
                raise ValueError("event-driven inference needs one neuron setting for all layers")
        self.beta = float(first.beta.detach().clamp(0.0, 1.0))
        self.threshold = float(first.threshold.detach())
        self.subtract = first.reset == "subtract"
        self.reset_value = first.reset_value
        self.readout_beta = float(model.readout.beta.detach().clamp(0.0, 1.0))
        self.spike_readout = cfg.readout == "spikes"
        self.encoder = model.encoder
        self.static_input = isinstance(model.encoder, DirectEncoder) and not model.sequence
        self.steps = cfg.steps
        self.sequence = model.sequence
        previous = model.layers[0].active_task
        model.set_task(task)
        try:
            with torch.no_grad():
                self.layers = [self._pack(layer) for layer in model.layers]
        finally:
            model.set_task(previous)
        self._structs = (_Layer * len(self.layers))(*[
            _Layer(ptr.numel() - 1, bias.numel(), ptr.data_ptr(), rows.data_ptr(),
                   vals.data_ptr(), bias.data_ptr()) for ptr, rows, vals, bias in self.layers])
        self.spike_counts = [0] * (len(self.layers) - 1)

    @staticmethod
    def _pack(layer: PlasticLinear) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        weight, bias = layer.effective_parameters()
        ptr, rows, vals = _csc(weight, layer.synapse_mask(layer.active_task))
        return ptr, rows, vals, bias.detach().float().contiguous()

    @property
    def live_synapses(self) -> int:
        return sum(int(rows.numel()) for _, rows, _, _ in self.layers)

    def encode(self, x: Tensor) -> Tensor:
        """Network input ``[T, B, n_in]`` (``[1, B, n_in]`` for direct coding: it is static)."""
        if self.static_input:
            return x.flatten(1).float().unsqueeze(0).contiguous()
        h = self.encoder(x)
        return h.reshape(h.shape[0], h.shape[1], -1).float().contiguous()

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        return self.run(self.encode(x))

    def run(self, encoded: Tensor) -> Tensor:
        """Outputs ``[B, n_out]`` for input prepared by :meth:`encode`."""
        steps = self.steps if self.static_input else encoded.shape[0]
        lib = _LIBRARY.load()
        if lib is None:
            return self._run_torch(encoded, steps)
        batch = encoded.shape[1]
        out = torch.empty(batch, self.layers[-1][3].numel())
        counts = (ctypes.c_int64 * max(len(self.layers) - 1, 1))()
        status = lib.ns_event_forward(
            steps, batch, len(self.layers), ctypes.addressof(self._structs), self.beta,
            self.threshold, int(self.subtract), self.reset_value, int(self.spike_readout),
            self.readout_beta, encoded.data_ptr(), int(self.static_input), out.data_ptr(),
            counts)
        if status != 0:
            raise MemoryError("event-driven inference: out of memory")
        for i in range(len(self.spike_counts)):
            self.spike_counts[i] += counts[i]
        return out

    def _run_torch(self, encoded: Tensor, steps: int) -> Tensor:
        """Same algorithm with torch ops: per step, gather the active columns and add them."""
        batch = encoded.shape[1]
        out = torch.zeros(batch, self.layers[-1][3].numel())
        for b in range(batch):
            v = [torch.zeros(bias.numel()) for *_, bias in self.layers]
            acc = torch.zeros_like(out[b])
            cur0 = None
            for t in range(steps):
                if cur0 is None or not self.static_input:
                    x = encoded[0 if self.static_input else t, b]
                    idx = x.nonzero().flatten()
                    cur0 = self._gather(self.layers[0], idx, x[idx])
                active = None
                for i, layer in enumerate(self.layers):
                    cur = cur0 if i == 0 else self._gather(layer, active, None)
                    last = i == len(self.layers) - 1
                    if last and not self.spike_readout:
                        v[i] = self.readout_beta * v[i] + cur
                        acc += v[i]
                        continue
                    x = self.beta * v[i] + cur
                    fired = (x - self.threshold) > 0
                    after = x - self.threshold if self.subtract else torch.full_like(
                        x, self.reset_value)
                    v[i] = torch.where(fired, after, x)
                    active = fired.nonzero().flatten()
                    if last:
                        acc += fired.float()
                    else:
                        self.spike_counts[i] += int(active.numel())
            out[b] = acc / steps if not self.spike_readout else acc
        return out

    @staticmethod
    def _gather(layer: tuple[Tensor, Tensor, Tensor, Tensor], idx: Tensor,
                scale: Tensor | None) -> Tensor:
        """Bias plus the columns ``idx`` (times ``scale``) of a CSC layer."""
        ptr, rows, vals, bias = layer
        cur = bias.clone()
        if idx.numel() == 0:
            return cur
        starts, lengths = ptr[idx], ptr[idx + 1] - ptr[idx]
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths)
        pos = torch.repeat_interleave(starts, lengths) + offsets
        values = vals[pos]
        if scale is not None:
            values = values * torch.repeat_interleave(scale, lengths)
        return cur.index_add_(0, rows[pos].long(), values)


def event_driven(model: Network, task: int | None = None) -> EventDrivenNetwork:
    """Event-driven inference copy of ``model`` (or of ``task``'s subnetwork)."""
    return EventDrivenNetwork(model, task)
