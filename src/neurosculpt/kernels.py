"""Fused LIF time loops.

`lif_sequence` runs a leaky integrate-and-fire recurrence over a whole ``[T, ...]`` input
current and returns the spike train. It is the only place where the neuron recurrence is
executed, so speed work happens here and nowhere else.

Why a hand-written kernel: a Python loop over time launches ~10 small tensor ops per step in the
forward pass and as many again in autograd's backward, and keeps every intermediate alive. Here
the whole sequence is one ``autograd.Function`` whose backward pass is written out by hand
(backpropagation through time), it saves only the pre-reset membrane, and both time loops run in
a small C library (no torch headers, so it builds in about a second with the system compiler on
first use and is cached). Without a compiler, or with ``NEUROSCULPT_COMPILE=0``, the same
``Function`` runs its loops with torch ops, which is slower but gives identical results.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch
from torch import Tensor

from neurosculpt.native import NativeLibrary
from neurosculpt.surrogate import Surrogate

SurrogateGrad = Callable[[Tensor], Tensor]


class _Spike(torch.autograd.Function):
    """Heaviside step forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: Tensor, surrogate_grad: SurrogateGrad) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate_grad = surrogate_grad
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate_grad(x), None


def lif_sequence_reference(
    current: Tensor,
    beta: float | Tensor,
    threshold: float | Tensor,
    reset_value: float | None,
    surrogate_grad: SurrogateGrad,
) -> Tensor:
    """Plain time loop: v = beta * v + I; s = H(v - thr); reset (detached).

    ``reset_value=None`` means reset by subtraction of the threshold.
    """
    v = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        v = beta * v + current[t]
        s = _Spike.apply(v - threshold, surrogate_grad)
        sd = s.detach()
        if reset_value is None:
            v = v - sd * threshold
        else:
            v = v * (1.0 - sd) + sd * reset_value
        spikes.append(s)
    return torch.stack(spikes)


# --------------------------------------------------------------------------------------------
# C kernels. One source, instantiated for float and double. Neurons are independent, so each
# thread takes a contiguous slice of the neuron axis and walks it block by block; within a block
# the time loop keeps the state in a small stack array that stays in L1. FP contraction is off so
# every multiply/add rounds exactly like the separate torch ops of the reference loop.
# --------------------------------------------------------------------------------------------

_SURROGATE_CODES = {"fast-sigmoid": 1, "arctan": 2, "triangle": 3, "sigmoid": 4}

_C_HEADER = r"""
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define NS_GET_CSR() _mm_getcsr()
#define NS_SET_CSR(v) _mm_setcsr(v)
#else
#define NS_GET_CSR() 0u
#define NS_SET_CSR(v) ((void)(v))
#endif
#define NS_BLOCK 512
#define NS_INLINE static inline __attribute__((always_inline))

unsigned int ns_get_csr(void) { return NS_GET_CSR(); }
static inline float ns_exp_f32(float x) { return expf(x); }
static inline double ns_exp_f64(double x) { return exp(x); }

typedef struct {
    const void *cur; const void *gs; const void *sg; const void *vpre;
    void *spk; void *vout; void *gi;
    int64_t T, N, n0, n1;
    double beta, thr, reset, slope;
    int subtract, code, params;
    unsigned int csr;
    double gbeta, gthr;
} ns_job;
"""

# Instantiated once per element type (TY, SFX). Flags that select a variant (surrogate code,
# reset mode, whether vpre is stored, whether beta/threshold grads are needed) are literal
# arguments of always-inline helpers, so every variant compiles to its own branch-free,
# vectorised loop.
_C_TYPED = r"""
NS_INLINE TY ns_sg_SFX(const int code, const TY x, const TY k) {
    const TY ax = x < 0 ? -x : x;
    if (code == 1) { const TY d = (TY)1 + k * ax; return (TY)1 / (d * d); }
    if (code == 2) {
        const TY z = (TY)1.5707963267948966 * k * x;
        return (k / (TY)2) / ((TY)1 + z * z);
    }
    if (code == 3) { const TY a = (TY)1 - k * ax; return a > 0 ? k * a : (TY)0; }
    const TY e = (TY)1 / ((TY)1 + ns_exp_SFX(-(k * x)));
    return k * e * ((TY)1 - e);
}

NS_INLINE void ns_fwd_block_SFX(const TY *restrict cur, TY *restrict spk, TY *restrict vo,
                                int64_t T, int64_t N, int64_t nb, TY beta, TY thr, TY rst,
                                const int sub, const int store) {
    TY v[NS_BLOCK];
    for (int64_t i = 0; i < nb; ++i) v[i] = 0;
    for (int64_t t = 0; t < T; ++t) {
        const TY *restrict c = cur + t * N;
        TY *restrict s = spk + t * N;
        TY *restrict o = store ? vo + t * N : 0;
        for (int64_t i = 0; i < nb; ++i) {
            TY x = beta * v[i];
            x = x + c[i];
            if (store) o[i] = x;
            const TY h = x - thr;
            const int f = h > 0;
            s[i] = f ? (TY)1 : (TY)0;
            v[i] = f ? (sub ? h : rst) : x;
        }
    }
}

static void ns_fwd_range_SFX(ns_job *j) {
    const TY beta = (TY)j->beta, thr = (TY)j->thr, rst = (TY)j->reset;
    for (int64_t b0 = j->n0; b0 < j->n1; b0 += NS_BLOCK) {
        const int64_t nb = (j->n1 - b0 < NS_BLOCK) ? j->n1 - b0 : NS_BLOCK;
        const TY *c = (const TY *)j->cur + b0;
        TY *s = (TY *)j->spk + b0;
        TY *o = j->vout ? (TY *)j->vout + b0 : 0;
        if (j->subtract) {
            if (o) ns_fwd_block_SFX(c, s, o, j->T, j->N, nb, beta, thr, rst, 1, 1);
            else ns_fwd_block_SFX(c, s, o, j->T, j->N, nb, beta, thr, rst, 1, 0);
        } else {
            if (o) ns_fwd_block_SFX(c, s, o, j->T, j->N, nb, beta, thr, rst, 0, 1);
            else ns_fwd_block_SFX(c, s, o, j->T, j->N, nb, beta, thr, rst, 0, 0);
        }
    }
}

NS_INLINE void ns_bwd_block_SFX(const TY *restrict gs, const TY *restrict sgv,
                                const TY *restrict vp, TY *restrict gi, int64_t T, int64_t N,
                                int64_t nb, TY beta, TY thr, TY rst, TY k, const int code,
                                const int sub, const int params, double *gb, double *gt) {
    TY gu[NS_BLOCK], ab[NS_BLOCK], at[NS_BLOCK];
    for (int64_t i = 0; i < nb; ++i) { gu[i] = 0; ab[i] = 0; at[i] = 0; }
    for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t off = t * N;
        const TY *restrict g_s = gs + off;
        const TY *restrict d_s = code ? 0 : sgv + off;
        const TY *restrict v_t = vp + off;
        const TY *restrict v_p = t > 0 ? vp + off - N : vp + off;
        TY *restrict g_i = gi + off;
        const int prev = params && t > 0;
        for (int64_t i = 0; i < nb; ++i) {
            const TY h = v_t[i] - thr;
            const int f = h > 0;
            const TY d = code ? ns_sg_SFX(code, h, k) : d_s[i];
            const TY g = g_s[i] * d;
            const TY carry = (sub || !f) ? gu[i] : (TY)0;
            const TY gv = g + carry;
            g_i[i] = gv;
            if (params) {
                at[i] -= g + ((sub && f) ? gu[i] : (TY)0);
                const TY u = v_p[i];
                const TY hu = u - thr;
                const TY post = hu > 0 ? (sub ? hu : rst) : u;
                ab[i] += prev ? gv * post : (TY)0;
            }
            gu[i] = beta * gv;
        }
    }
    if (params) {
        double sb = 0, st = 0;
        for (int64_t i = 0; i < nb; ++i) { sb += (double)ab[i]; st += (double)at[i]; }
        *gb += sb; *gt += st;
    }
}

#define NS_BWD_SFX(C)                                                                    \
    do {                                                                                 \
        if (j->subtract) {                                                               \
            if (j->params) ns_bwd_block_SFX(gs, sg, vp, gi, T, N, nb, beta, thr, rst, k,  \
                                            C, 1, 1, &gb, &gt);                          \
            else ns_bwd_block_SFX(gs, sg, vp, gi, T, N, nb, beta, thr, rst, k,            \
                                  C, 1, 0, &gb, &gt);                                    \
        } else {                                                                         \
            if (j->params) ns_bwd_block_SFX(gs, sg, vp, gi, T, N, nb, beta, thr, rst, k,  \
                                            C, 0, 1, &gb, &gt);                          \
            else ns_bwd_block_SFX(gs, sg, vp, gi, T, N, nb, beta, thr, rst, k,            \
                                  C, 0, 0, &gb, &gt);                                    \
        }                                                                                \
    } while (0)

static void ns_bwd_range_SFX(ns_job *j) {
    const TY beta = (TY)j->beta, thr = (TY)j->thr, rst = (TY)j->reset, k = (TY)j->slope;
    const int64_t T = j->T, N = j->N;
    double gb = 0, gt = 0;
    for (int64_t b0 = j->n0; b0 < j->n1; b0 += NS_BLOCK) {
        const int64_t nb = (j->n1 - b0 < NS_BLOCK) ? j->n1 - b0 : NS_BLOCK;
        const TY *gs = (const TY *)j->gs + b0;
        const TY *sg = j->sg ? (const TY *)j->sg + b0 : 0;
        const TY *vp = (const TY *)j->vpre + b0;
        TY *gi = (TY *)j->gi + b0;
        switch (j->code) {
        case 1: NS_BWD_SFX(1); break;
        case 2: NS_BWD_SFX(2); break;
        case 3: NS_BWD_SFX(3); break;
        case 4: NS_BWD_SFX(4); break;
        default: NS_BWD_SFX(0); break;
        }
    }
    j->gbeta = gb;
    j->gthr = gt;
}
"""

_C_DRIVER = r"""
typedef void (*ns_range_fn)(ns_job *);
typedef struct { ns_job job; ns_range_fn fn; } ns_task;

static void *ns_run_task(void *arg) {
    ns_task *t = (ns_task *)arg;
    const unsigned int old = NS_GET_CSR();
    NS_SET_CSR(t->job.csr);
    t->fn(&t->job);
    NS_SET_CSR(old);
    return 0;
}

/* Split the neuron axis into nthreads slices (multiples of 16 elements so slices do not share
   cache lines); slice 0 runs on the caller, the rest on fresh threads. */
static void ns_parallel(const ns_job *base, ns_range_fn fn, int nthreads, double *sums) {
    ns_task tasks[64];
    pthread_t tids[64];
    int started[64] = {0};
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    const int64_t N = base->N;
    int64_t per = (N + nthreads - 1) / nthreads;
    per = ((per + 15) / 16) * 16;
    int used = 0;
    for (int p = 0; p < nthreads && p * per < N; ++p) {
        tasks[p].job = *base;
        tasks[p].job.n0 = p * per;
        tasks[p].job.n1 = (p + 1) * per < N ? (p + 1) * per : N;
        tasks[p].job.gbeta = 0;
        tasks[p].job.gthr = 0;
        tasks[p].fn = fn;
        used = p + 1;
    }
    for (int p = 1; p < used; ++p)
        started[p] = pthread_create(&tids[p], 0, ns_run_task, &tasks[p]) == 0;
    if (used > 0) fn(&tasks[0].job);
    for (int p = 1; p < used; ++p) {
        if (started[p]) pthread_join(tids[p], 0);
        else fn(&tasks[p].job);
    }
    if (sums) {
        sums[0] = 0;
        sums[1] = 0;
        for (int p = 0; p < used; ++p) {
            sums[0] += tasks[p].job.gbeta;
            sums[1] += tasks[p].job.gthr;
        }
    }
}

void ns_lif_forward(int is_double, const void *cur, void *spk, void *vout, int64_t T, int64_t N,
                    double beta, double thr, int subtract, double reset, int nthreads,
                    unsigned int csr) {
    ns_job j = {0};
    j.cur = cur; j.spk = spk; j.vout = vout; j.T = T; j.N = N;
    j.beta = beta; j.thr = thr; j.subtract = subtract; j.reset = reset; j.csr = csr;
    ns_parallel(&j, is_double ? ns_fwd_range_f64 : ns_fwd_range_f32, nthreads, 0);
}

void ns_lif_backward(int is_double, const void *gs, const void *sg, const void *vpre, void *gi,
                     int64_t T, int64_t N, double beta, double thr, int subtract, double reset,
                     int code, double slope, int params, int nthreads, unsigned int csr,
                     double *sums) {
    ns_job j = {0};
    j.gs = gs; j.sg = sg; j.vpre = vpre; j.gi = gi; j.T = T; j.N = N;
    j.beta = beta; j.thr = thr; j.subtract = subtract; j.reset = reset;
    j.code = code; j.slope = slope; j.params = params; j.csr = csr;
    ns_parallel(&j, is_double ? ns_bwd_range_f64 : ns_bwd_range_f32, nthreads, sums);
}
"""

_C_SOURCE = "".join(
    [_C_HEADER]
    + [
        _C_TYPED.replace("TY", ty).replace("SFX", sfx)
        for ty, sfx in (("float", "f32"), ("double", "f64"))
    ]
    + [_C_DRIVER]
)

_MIN_PARALLEL_ELEMENTS = 1 << 15


def _declare(lib: ctypes.CDLL) -> None:
    """Signatures of the kernel functions."""
    i64, dbl, cint, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
    uint = ctypes.c_uint
    lib.ns_get_csr.restype = uint
    lib.ns_get_csr.argtypes = []
    lib.ns_lif_forward.restype = None
    # as declared in the C source: ns_lif_forward(is_double, cur, spk, vout, T, N, beta, thr,
    # subtract, reset, nthreads, csr); ns_lif_backward(is_double, gs, sg, vpre, gi, T, N, beta,
    # thr, subtract, reset, code, slope, params, nthreads, csr, sums)
    lib.ns_lif_forward.argtypes = [cint, ptr, ptr, ptr, i64, i64, dbl, dbl, cint, dbl, cint, uint]
    lib.ns_lif_backward.restype = None
    lib.ns_lif_backward.argtypes = [cint, ptr, ptr, ptr, ptr, i64, i64, dbl, dbl, cint, dbl, cint,
                                    dbl, cint, cint, uint, ctypes.POINTER(ctypes.c_double)]


_LIBRARY = NativeLibrary("lif", _C_SOURCE, _declare, "C LIF kernel", "the torch loop",
                         flags=["-pthread"], libraries=["-lm"])


def native_available() -> bool:
    """Whether the compiled C kernels are in use (builds them on first call)."""
    return _LIBRARY.load() is not None


def _threads(numel: int) -> int:
    """Threads for one kernel call: torch's intra-op count, but only for work worth splitting."""
    return max(1, torch.get_num_threads()) if numel >= _MIN_PARALLEL_ELEMENTS else 1


def _surrogate_code(surrogate_grad: SurrogateGrad) -> tuple[int, float]:
    """Code of a surrogate the C kernel evaluates inline (0: call the Python callable)."""
    if isinstance(surrogate_grad, Surrogate) and surrogate_grad.name in _SURROGATE_CODES:
        return _SURROGATE_CODES[surrogate_grad.name], float(surrogate_grad.slope)
    return 0, 0.0


def _post_reset(vpre: Tensor, thr: float, reset_value: float | None) -> Tensor:
    """Membrane after the (detached) reset, from the saved pre-reset membrane."""
    fired = (vpre - thr) > 0
    after = vpre - thr if reset_value is None else torch.full_like(vpre, reset_value)
    return torch.where(fired, after, vpre)


def _forward_torch(
    current: Tensor, beta: float, thr: float, reset_value: float | None
) -> tuple[Tensor, Tensor]:
    """Forward time loop with torch ops; same rounding as the reference loop."""
    vpre = torch.empty_like(current)
    v = torch.zeros_like(current[0])
    for t in range(current.shape[0]):
        v = beta * v + current[t]
        vpre[t] = v
        after = v - thr if reset_value is None else torch.full_like(v, reset_value)
        v = torch.where((v - thr) > 0, after, v)
    return ((vpre - thr) > 0).to(current.dtype), vpre


def _backward_torch(
    grad_s: Tensor, sg: Tensor, vpre: Tensor, beta: float, thr: float, reset_value: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """BPTT with torch ops: returns grad of current, of beta and of threshold."""
    fired = (vpre - thr) > 0
    g = grad_s * sg
    keep = torch.ones_like(vpre) if reset_value is None else (~fired).to(vpre.dtype)
    grad_v = torch.empty_like(vpre)
    nxt = torch.zeros_like(vpre[0])
    for t in range(vpre.shape[0] - 1, -1, -1):
        nxt = g[t] + keep[t] * (beta * nxt)
        grad_v[t] = nxt
    grad_u = torch.zeros_like(vpre)
    grad_u[:-1] = beta * grad_v[1:]
    grad_thr = -g.sum()
    if reset_value is None:
        grad_thr = grad_thr - (grad_u * fired).sum()
    grad_beta = (grad_v[1:] * _post_reset(vpre[:-1], thr, reset_value)).sum()
    return grad_v, grad_beta, grad_thr


class _LIFSequence(torch.autograd.Function):
    """Whole LIF sequence as one autograd node; saves only the pre-reset membrane."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        current: Tensor,
        beta_t: Tensor | None,
        thr_t: Tensor | None,
        beta: float,
        thr: float,
        reset_value: float | None,
        surrogate_grad: SurrogateGrad,
        lib: ctypes.CDLL | None,
    ) -> Tensor:
        current = current.contiguous()
        need_grad = any(ctx.needs_input_grad[:3])
        if lib is None:
            spikes, vpre = _forward_torch(current, beta, thr, reset_value)
        else:
            spikes = torch.empty_like(current)
            vpre = torch.empty_like(current) if need_grad else None
            steps = current.shape[0]
            n = current.numel() // steps
            lib.ns_lif_forward(
                int(current.dtype == torch.float64),
                current.data_ptr(),
                spikes.data_ptr(),
                None if vpre is None else vpre.data_ptr(),
                steps,
                n,
                beta,
                thr,
                int(reset_value is None),
                0.0 if reset_value is None else reset_value,
                _threads(current.numel()),
                lib.ns_get_csr(),
            )
        if need_grad:
            ctx.save_for_backward(vpre)
        ctx.params = (beta, thr, reset_value, surrogate_grad, lib)
        ctx.param_meta = tuple(None if p is None else (p.dtype, p.device) for p in (beta_t, thr_t))
        return spikes

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        (vpre,) = ctx.saved_tensors
        beta, thr, reset_value, surrogate_grad, lib = ctx.params
        grad_s = grad_s.contiguous()
        code, slope = _surrogate_code(surrogate_grad) if lib is not None else (0, 0.0)
        sg = None if code else surrogate_grad(vpre - thr).to(vpre.dtype).contiguous()
        if lib is None:
            grad_i, grad_beta, grad_thr = _backward_torch(grad_s, sg, vpre, beta, thr, reset_value)
        else:
            grad_i = torch.empty_like(vpre)
            sums = (ctypes.c_double * 2)()
            steps = vpre.shape[0]
            lib.ns_lif_backward(
                int(vpre.dtype == torch.float64),
                grad_s.data_ptr(),
                None if sg is None else sg.data_ptr(),
                vpre.data_ptr(),
                grad_i.data_ptr(),
                steps,
                vpre.numel() // steps,
                beta,
                thr,
                int(reset_value is None),
                0.0 if reset_value is None else reset_value,
                code,
                slope,
                int(ctx.needs_input_grad[1] or ctx.needs_input_grad[2]),
                _threads(vpre.numel()),
                lib.ns_get_csr(),
                sums,
            )
            grad_beta = torch.tensor(sums[0], dtype=torch.float64, device="cpu")
            grad_thr = torch.tensor(sums[1], dtype=torch.float64, device="cpu")
        out_beta, out_thr = (
            grad.to(dtype=meta[0], device=meta[1]) if need else None
            for grad, meta, need in zip(
                (grad_beta, grad_thr), ctx.param_meta, ctx.needs_input_grad[1:3], strict=True
            )
        )
        grad_cur = grad_i if ctx.needs_input_grad[0] else None
        return grad_cur, out_beta, out_thr, None, None, None, None, None


def _is_scalar(value: float | Tensor) -> bool:
    return not isinstance(value, Tensor) or value.dim() == 0


def _value(value: float | Tensor) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def lif_sequence(
    current: Tensor,
    beta: float | Tensor,
    threshold: float | Tensor,
    reset_value: float | None,
    surrogate_grad: SurrogateGrad,
) -> Tensor:
    """Spikes ``[T, ...]`` of a LIF population driven by ``current`` ``[T, ...]``.

    Same result as :func:`lif_sequence_reference` (spikes bit for bit, gradients to rounding) but
    one autograd node for the whole sequence. Scalar ``beta``/``threshold`` may be tensors that
    require grad; non-scalar ones fall back to the reference loop.
    """
    if not (_is_scalar(beta) and _is_scalar(threshold)) or current.dim() == 0:
        return lif_sequence_reference(current, beta, threshold, reset_value, surrogate_grad)
    if current.shape[0] == 0:
        return current.new_empty(current.shape)
    native = current.device.type == "cpu" and current.dtype in (torch.float32, torch.float64)
    lib = _LIBRARY.load() if native else None
    beta_t = beta if isinstance(beta, Tensor) else None
    thr_t = threshold if isinstance(threshold, Tensor) else None
    reset = None if reset_value is None else float(reset_value)
    return _LIFSequence.apply(
        current, beta_t, thr_t, _value(beta), _value(threshold), reset, surrogate_grad, lib
    )


__all__ = ["SurrogateGrad", "lif_sequence", "lif_sequence_reference", "native_available"]
