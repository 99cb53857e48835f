# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""fastnn._kernels -- the only compiled module: thin typed calls into csrc/.

Each function here takes C-contiguous typed memoryviews whose shapes were
already checked by :mod:`fastnn.kernels` (or by a layer, once at build time),
releases the GIL and calls one C kernel.  Outputs come first, as in C.
A negative C status is turned into a Python exception.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t

from fastnn._fastnn_c cimport *

# (the C declarations of this section are in _fastnn_c.pxd)

#: activation name -> C code (fnn_act in csrc/fastnn.h), read from the C enum
ACTIVATIONS = {
    "identity": FNN_ACT_IDENTITY, "sigmoid": FNN_ACT_SIGMOID, "tanh": FNN_ACT_TANH,
    "relu": FNN_ACT_RELU, "leaky_relu": FNN_ACT_LEAKY_RELU, "elu": FNN_ACT_ELU,
    "gelu": FNN_ACT_GELU, "softplus": FNN_ACT_SOFTPLUS, "silu": FNN_ACT_SILU,
    "softmax": FNN_ACT_SOFTMAX,
}
#: the loss codes of MLPPlan.run (FNN_LOSS_* in csrc/fastnn.h)
LOSS_CE_LABELS, LOSS_CE_ROWS = FNN_LOSS_CE_LABELS, FNN_LOSS_CE_ROWS
LOSS_MSE, LOSS_BCE = FNN_LOSS_MSE, FNN_LOSS_BCE

ctypedef fused floating:
    float
    double

fnn_init()


cdef int _check(int status, str name) except -1:
    """Turn a C status into an exception naming the kernel."""
    if status == FNN_OK:
        return 0
    if status == FNN_ENOMEM:
        raise MemoryError(f"{name}: could not allocate the kernel's workspace")
    if status == FNN_EOVERFLOW:
        raise ValueError(f"{name}: array sizes overflow 64-bit indexing")
    if status == FNN_ELABEL:
        raise ValueError(f"{name}: a class label is outside [0, n_classes)")
    raise ValueError(f"{name}: invalid argument (status {status})")


cdef inline floating *_p2(floating[:, ::1] v) noexcept nogil:
    """Pointer to a 2-D view's data, NULL for None or an empty view."""
    if v is None or v.shape[0] == 0 or v.shape[1] == 0:
        return NULL
    return &v[0, 0]


cdef inline const floating *_c2(const floating[:, ::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0 or v.shape[1] == 0:
        return NULL
    return &v[0, 0]


cdef inline floating *_p1(floating[::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0:
        return NULL
    return &v[0]


cdef inline const floating *_c1(const floating[::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0:
        return NULL
    return &v[0]


# ---- shape checks: this module is memory-safe on its own ----------------------------
# Every wrapper checks each array it reads or writes against the sizes the C call will
# use before that call, so a private call with wrong shapes raises instead of writing
# out of bounds.  A few integer compares: no Python objects on the success path.

cdef int _bad2(str kernel, str name, int64_t r, int64_t c, Py_ssize_t gr, Py_ssize_t gc,
               bint missing) except -1:
    if missing:
        raise ValueError(f"{kernel}: {name} is required, of shape ({r}, {c})")
    raise ValueError(f"{kernel}: {name} must have shape ({r}, {c}), got ({gr}, {gc})")


cdef int _bad1(str kernel, str name, int64_t n, Py_ssize_t g, bint missing) except -1:
    if missing:
        raise ValueError(f"{kernel}: {name} is required, of shape ({n},)")
    raise ValueError(f"{kernel}: {name} must have shape ({n},), got ({g},)")


cdef inline int _s2(const floating[:, ::1] v, int64_t r, int64_t c, bint optional, str kernel,
                    str name) except -1:
    """ValueError unless the 2-D view v (read or written) is (r, c), or None when optional."""
    if v is None:
        return 0 if optional else _bad2(kernel, name, r, c, 0, 0, True)
    if v.shape[0] != r or v.shape[1] != c:
        _bad2(kernel, name, r, c, v.shape[0], v.shape[1], False)
    return 0


cdef inline int _s1(const floating[::1] v, int64_t n, bint optional, str kernel,
                    str name) except -1:
    """ValueError unless the 1-D view v (read or written) has n elements, or is None when
    optional."""
    if v is None:
        return 0 if optional else _bad1(kernel, name, n, 0, True)
    if v.shape[0] != n:
        _bad1(kernel, name, n, v.shape[0], False)
    return 0


def config():
    """The engine's configuration: ISA, OpenMP, GEMM block sizes per dtype, the ISA of
    each kernel family (``kernels``), the CPU's features and the subnormal mode."""
    cdef int64_t mr, nr, mc, kc, nc
    cdef int i
    cdef unsigned int feat = fnn_cpu_features()
    out = {"isa": fnn_isa_name(fnn_isa()).decode(), "cpu_has_avx2": bool(fnn_cpu_has_avx2()),
           "openmp": bool(fnn_openmp_enabled())}
    for name, size in (("float32", 4), ("float64", 8)):
        fnn_gemm_blocking(size, &mr, &nr, &mc, &kc, &nc)
        out[name] = {"MR": mr, "NR": nr, "MC": mc, "KC": kc, "NC": nc}
    out["kernels"] = {fnn_family_name(i).decode(): fnn_isa_name(fnn_family_isa(i)).decode()
                      for i in range(FNN_FAM_COUNT)}
    out["cpu_features"] = {fnn_cpu_feature_name(i).decode(): bool((feat >> i) & 1)
                           for i in range(FNN_CPU_FEATURE_COUNT)}
    out["isa_supported"] = {fnn_isa_name(i).decode(): bool(fnn_isa_supported(i))
                            for i in range(FNN_ISA_COUNT)}
    out["flush_denormal"] = bool(fnn_get_flush_denormal())
    out["avx512_emulated"] = bool(fnn_isa_emulated())
    fnn_gemm_bf16_blocking(&mr, &nr, &mc, &kc, &nc)
    out["bf16"] = {"MR": mr, "NR": nr, "MC": mc, "KC": kc, "NC": nc}
    out["matmul_precision"] = "bf16" if fnn_matmul_precision() == FNN_PREC_BF16 else "float32"
    return out


def set_matmul_precision(bint bf16):
    """Process-wide matmul precision: bf16 operands (True) or float32 (False)."""
    fnn_set_matmul_precision(FNN_PREC_BF16 if bf16 else FNN_PREC_F32)


def set_thread_matmul_precision(int prec):
    """This thread's override: 1 bf16, 0 float32, -1 none; returns the previous one."""
    if prec < 0:
        return fnn_set_thread_matmul_precision(-1)
    return fnn_set_thread_matmul_precision(FNN_PREC_BF16 if prec else FNN_PREC_F32)


def matmul_precision_in_force():
    """The precision the C side uses for a GEMM called on this thread now."""
    return "bf16" if fnn_matmul_precision() == FNN_PREC_BF16 else "float32"


def f32_to_bf16(const float[::1] src, uint16_t[::1] dst):
    """dst = the bf16 bit patterns of src (the packing's conversion; a test helper)."""
    if dst.shape[0] != src.shape[0]:
        raise ValueError(f"f32_to_bf16: dst has {dst.shape[0]} elements, src {src.shape[0]}")
    with nogil:
        fnn_f32_to_bf16(&dst[0] if dst.shape[0] else NULL,
                        &src[0] if src.shape[0] else NULL, src.shape[0])


def isa_request():
    """What became of FASTNN_ISA: "none", "ok", "unknown" or "unavailable"."""
    cdef int r = fnn_isa_request()
    if r == FNN_ISA_REQ_OK:
        return "ok"
    if r == FNN_ISA_REQ_UNKNOWN:
        return "unknown"
    if r == FNN_ISA_REQ_UNAVAILABLE:
        return "unavailable"
    return "none"


def set_flush_denormal(bint on):
    """Process-wide: kernels run with FTZ+DAZ (True) or IEEE gradual underflow (False)."""
    fnn_set_flush_denormal(on)


def get_flush_denormal():
    """True when kernels flush subnormals (FTZ+DAZ) during their calls."""
    return bool(fnn_get_flush_denormal())


def _mxcsr():
    """The calling thread's MXCSR (0 where the CPU has none); a test helper."""
    return fnn_mxcsr_get()


def _set_mxcsr(unsigned int value):
    """Set the calling thread's MXCSR (a test helper: restore what you read)."""
    fnn_mxcsr_set(value)


def fma_peak(double seconds=0.3, int n_threads=1):
    """The float32 FMA peak, measured with the widest vectors of the ISA level in use.

    Returns a dict: ``wall`` (GFLOP/s of all threads by the wall clock), ``cpu`` (the
    sum of the threads' rates per CPU-second, the peak while running even on a shared
    machine), ``width`` (vector bits: 512, 256, or 0 for the baseline code), ``isa``.
    """
    cdef double wall = 0.0, cpu = 0.0
    cdef int width = 0, st
    with nogil:
        st = fnn_fma_peak(&wall, &cpu, &width, seconds, n_threads)
    _check(st, "fma_peak")
    return {"wall": wall, "cpu": cpu, "width": width,
            "isa": fnn_isa_name(fnn_isa()).decode()}


def window_out_size(int64_t n, int64_t k, int64_t s, int64_t p):
    """Output length of a window k, stride s, padding p over length n (floor mode);
    -1 when the sizes are out of domain (the C kernels' formula)."""
    return fnn_window_out_size(n, k, s, p)


def act_needs_z(int act):
    """True when the derivative of activation code `act` needs the pre-activation."""
    return bool(fnn_act_needs_z(act))


def gemm(floating[:, ::1] c, const floating[:, ::1] a, const floating[:, ::1] b, bint trans_a,
         bint trans_b, double alpha, double beta, int n_threads):
    """c (m, n) = alpha op(a) op(b) + beta c; a is (m, k) or (k, m) if trans_a, b likewise."""
    if c is None or a is None or b is None:
        raise ValueError("gemm: c, a and b are required")
    cdef int64_t m = c.shape[0], n = c.shape[1]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    cdef int st
    if trans_a:
        _s2(a, k, m, False, "gemm", "a (transposed)")
    else:
        _s2(a, m, k, False, "gemm", "a")
    if trans_b:
        _s2(b, n, k, False, "gemm", "b (transposed)")
    else:
        _s2(b, k, n, False, "gemm", "b")
    if m == 0 or n == 0:
        return
    if lda == 0:
        lda = 1
    if ldb == 0:
        ldb = 1
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_gemm_f32(&c[0, 0], _c2(a), _c2(b), m, n, k, lda, ldb, n, trans_a, trans_b,
                              <float>alpha, <float>beta, NULL, n_threads)
        else:
            st = fnn_gemm_f64(&c[0, 0], _c2(a), _c2(b), m, n, k, lda, ldb, n, trans_a, trans_b,
                              alpha, beta, NULL, n_threads)
        fnn_fpenv_pop()
    _check(st, "gemm")


def dense_forward(floating[:, ::1] a, floating[:, ::1] z, const floating[:, ::1] x,
                  const floating[:, ::1] w, const floating[::1] b, int act, int n_threads):
    """a (batch, out) = act(x (batch, in) @ w (in, out) + b (out,)); z (or None) = pre-activation."""
    if x is None or w is None:
        raise ValueError("dense_forward: x and w are required")
    cdef int64_t batch = x.shape[0], inp = x.shape[1], out = w.shape[1]
    cdef int st
    _s2(w, inp, out, False, "dense_forward", "w")
    _s1(b, out, True, "dense_forward", "b")
    _s2(a, batch, out, False, "dense_forward", "out")
    _s2(z, batch, out, True, "dense_forward", "z")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_dense_forward_f32(_p2(a), _p2(z), _c2(x), _c2(w), _c1(b), batch, inp, out,
                                       act, n_threads)
        else:
            st = fnn_dense_forward_f64(_p2(a), _p2(z), _c2(x), _c2(w), _c1(b), batch, inp, out,
                                       act, n_threads)
        fnn_fpenv_pop()
    _check(st, "dense_forward")


def dense_backward(floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                   floating[:, ::1] delta, const floating[:, ::1] da, const floating[:, ::1] a,
                   const floating[:, ::1] z, const floating[:, ::1] x, const floating[:, ::1] w,
                   int act, double beta_w, int n_threads):
    """delta = da * act'(z); dw = x^T delta + beta_w dw; db = sum(delta); dx = delta w^T."""
    if x is None or w is None:
        raise ValueError("dense_backward: x and w are required")
    cdef int64_t batch = x.shape[0], inp = x.shape[1], out = w.shape[1]
    cdef int st
    _s2(w, inp, out, False, "dense_backward", "w")
    _s2(da, batch, out, False, "dense_backward", "grad_out")
    _s2(a, batch, out, True, "dense_backward", "out_act")
    _s2(z, batch, out, True, "dense_backward", "pre_act")
    _s2(delta, batch, out, True, "dense_backward", "delta")
    _s2(dx, batch, inp, True, "dense_backward", "dx")
    _s2(dw, inp, out, True, "dense_backward", "dw")
    _s1(db, out, True, "dense_backward", "db")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_dense_backward_f32(_p2(dx), _p2(dw), _p1(db), _p2(delta), _c2(da), _c2(a),
                                        _c2(z), _c2(x), _c2(w), batch, inp, out, act,
                                        <float>beta_w, n_threads)
        else:
            st = fnn_dense_backward_f64(_p2(dx), _p2(dw), _p1(db), _p2(delta), _c2(da), _c2(a),
                                        _c2(z), _c2(x), _c2(w), batch, inp, out, act, beta_w,
                                        n_threads)
        fnn_fpenv_pop()
    _check(st, "dense_backward")


def act_forward(floating[:, ::1] out, const floating[:, ::1] x, int act):
    """out (rows, cols) = act(x); softmax over each row."""
    cdef int st
    if x is None:
        raise ValueError("activation_forward: x is required")
    _s2(out, x.shape[0], x.shape[1], False, "activation_forward", "out")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_act_forward_f32(_p2(out), _c2(x), x.shape[0], x.shape[1], act)
        else:
            st = fnn_act_forward_f64(_p2(out), _c2(x), x.shape[0], x.shape[1], act)
        fnn_fpenv_pop()
    _check(st, "activation_forward")


def act_backward(floating[:, ::1] dz, floating[::1] dbias, const floating[:, ::1] da,
                 const floating[:, ::1] a, const floating[:, ::1] z, int act):
    """dz (rows, cols) = da * act'(z) from a = act(z); dbias (cols,) or None = column sums."""
    cdef int st
    if da is None:
        raise ValueError("activation_backward: grad_out is required")
    cdef int64_t rows = da.shape[0], cols = da.shape[1]
    _s2(dz, rows, cols, False, "activation_backward", "out")
    _s1(dbias, cols, True, "activation_backward", "dbias")
    _s2(a, rows, cols, True, "activation_backward", "out_act")
    _s2(z, rows, cols, True, "activation_backward", "pre_act")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_act_backward_f32(_p2(dz), _p1(dbias), _c2(da), _c2(a), _c2(z), da.shape[0],
                                      da.shape[1], act)
        else:
            st = fnn_act_backward_f64(_p2(dz), _p1(dbias), _c2(da), _c2(a), _c2(z), da.shape[0],
                                      da.shape[1], act)
        fnn_fpenv_pop()
    _check(st, "activation_backward")


def cross_entropy(floating[:, ::1] grad, const floating[:, ::1] logits,
                  const int64_t[::1] labels, const floating[:, ::1] target):
    """Mean softmax cross-entropy of logits (batch, classes) against labels (batch,) or
    target rows (batch, classes); fills grad (or None) and returns the loss."""
    cdef double loss = 0.0
    cdef int st
    cdef const int64_t *lab = NULL
    if labels is not None and labels.shape[0] > 0:
        lab = &labels[0]
    if labels is not None and target is not None:
        raise ValueError("cross_entropy: give labels or target, not both")
    if logits is None:
        raise ValueError("cross_entropy: logits are required")
    if labels is None and target is None:
        raise ValueError("cross_entropy: labels or target is required")
    if labels is not None and labels.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},), got "
                         f"({labels.shape[0]},)")
    _s2(target, logits.shape[0], logits.shape[1], True, "cross_entropy", "target")
    _s2(grad, logits.shape[0], logits.shape[1], True, "cross_entropy", "grad_out")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_cross_entropy_f32(&loss, _p2(grad), _c2(logits), lab, _c2(target),
                                       logits.shape[0], logits.shape[1])
        else:
            st = fnn_cross_entropy_f64(&loss, _p2(grad), _c2(logits), lab, _c2(target),
                                       logits.shape[0], logits.shape[1])
        fnn_fpenv_pop()
    _check(st, "cross_entropy")
    return loss


def mse(floating[::1] grad, const floating[::1] pred, const floating[::1] target):
    """Mean squared error of flat pred (n,) against target (n,); fills grad, returns loss."""
    cdef double loss = 0.0
    cdef int st
    if pred is None:
        raise ValueError("mse: pred is required")
    _s1(target, pred.shape[0], False, "mse", "target")
    _s1(grad, pred.shape[0], True, "mse", "grad_out")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_mse_f32(&loss, _p1(grad), _c1(pred), _c1(target), pred.shape[0])
        else:
            st = fnn_mse_f64(&loss, _p1(grad), _c1(pred), _c1(target), pred.shape[0])
        fnn_fpenv_pop()
    _check(st, "mse")
    return loss


def bce_logits(floating[::1] grad, const floating[::1] logits, const floating[::1] target):
    """Mean binary cross-entropy from flat logits (n,); fills grad, returns loss."""
    cdef double loss = 0.0
    cdef int st
    if logits is None:
        raise ValueError("binary_cross_entropy: logits is required")
    _s1(target, logits.shape[0], False, "binary_cross_entropy", "target")
    _s1(grad, logits.shape[0], True, "binary_cross_entropy", "grad_out")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_bce_logits_f32(&loss, _p1(grad), _c1(logits), _c1(target), logits.shape[0])
        else:
            st = fnn_bce_logits_f64(&loss, _p1(grad), _c1(logits), _c1(target), logits.shape[0])
        fnn_fpenv_pop()
    _check(st, "binary_cross_entropy")
    return loss


def sgd_update(floating[::1] w, const floating[::1] dw, double lr):
    """w (n,) -= lr * dw (n,), in place."""
    cdef int st
    if w is None:
        raise ValueError("sgd_update: w is required")
    _s1(dw, w.shape[0], False, "sgd_update", "dw")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_sgd_update_f32(_p1(w), _c1(dw), w.shape[0], <float>lr)
        else:
            st = fnn_sgd_update_f64(_p1(w), _c1(dw), w.shape[0], lr)
        fnn_fpenv_pop()
    _check(st, "sgd_update")


# ---- optimizer steps and dropout ----------------------------------------------
# Called directly on the training hot path (``_k.adam_step["float"](...)``), so
# besides the C call they only check that every array has w's length: a wrong
# length would otherwise read or write out of bounds.  Optional arrays accept
# None (NULL in C).  All 1-D, C-contiguous, of w's dtype.

cdef int _same_len(int64_t n, int64_t m, str kernel, str name) except -1:
    if m != n:
        raise ValueError(f"{kernel}: {name} has {m} elements, w has {n}")
    return 0


def sgd_step(floating[::1] w, const floating[::1] g, floating[::1] buf, double lr,
             double momentum, double dampening, bint nesterov, double weight_decay,
             bint first_step, int n_threads):
    """torch.optim.SGD step on w (n,) with gradient g (n,) and momentum buf (n,) or None."""
    cdef int64_t n = w.shape[0]
    cdef int st
    _same_len(n, g.shape[0], "sgd_step", "g")
    if buf is not None:
        _same_len(n, buf.shape[0], "sgd_step", "buf")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_sgd_step_f32(_p1(w), _p1(buf), _c1(g), n, <float>lr, <float>momentum,
                                  <float>dampening, nesterov, <float>weight_decay, first_step,
                                  n_threads)
        else:
            st = fnn_sgd_step_f64(_p1(w), _p1(buf), _c1(g), n, lr, momentum, dampening,
                                  nesterov, weight_decay, first_step, n_threads)
        fnn_fpenv_pop()
    _check(st, "sgd_step")


def adam_step(floating[::1] w, const floating[::1] g, floating[::1] m, floating[::1] v,
              floating[::1] vmax, int64_t step, double lr, double beta1, double beta2,
              double eps, double weight_decay, bint decoupled, int n_threads):
    """torch.optim.Adam / AdamW (decoupled) step on w (n,); m, v (n,); vmax (n,) or None."""
    cdef int64_t n = w.shape[0]
    cdef int st
    _same_len(n, g.shape[0], "adam_step", "g")
    _same_len(n, m.shape[0], "adam_step", "m")
    _same_len(n, v.shape[0], "adam_step", "v")
    if vmax is not None:
        _same_len(n, vmax.shape[0], "adam_step", "vmax")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_adam_step_f32(_p1(w), _p1(m), _p1(v), _p1(vmax), _c1(g), n, <float>lr,
                                   <float>beta1, <float>beta2, <float>eps,
                                   <float>weight_decay, decoupled, step, n_threads)
        else:
            st = fnn_adam_step_f64(_p1(w), _p1(m), _p1(v), _p1(vmax), _c1(g), n, lr, beta1,
                                   beta2, eps, weight_decay, decoupled, step, n_threads)
        fnn_fpenv_pop()
    _check(st, "adam_step")


def l2_grad(floating[::1] g, const floating[::1] w, double wd):
    """g (n,) += wd * w (n,) in place; returns sum(w**2) in float64 (scikit-learn's
    L2 penalty on one weight array, on the training hot path: lengths checked only)."""
    cdef int st
    cdef double sq = 0
    if g is None or w is None:
        raise ValueError("l2_grad: g and w are required")
    _same_len(g.shape[0], w.shape[0], "l2_grad", "w")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_l2_grad_f32(&sq, _p1(g), _c1(w), g.shape[0], <float>wd)
        else:
            st = fnn_l2_grad_f64(&sq, _p1(g), _c1(w), g.shape[0], wd)
        fnn_fpenv_pop()
    _check(st, "l2_grad")
    return sq


def rmsprop_step(floating[::1] w, const floating[::1] g, floating[::1] sq, floating[::1] buf,
                 floating[::1] gavg, double lr, double alpha, double eps, double weight_decay,
                 double momentum, bint centered, int n_threads):
    """torch.optim.RMSprop step on w (n,); sq (n,); buf (n,) if momentum > 0; gavg if centered."""
    cdef int64_t n = w.shape[0]
    cdef int st
    _same_len(n, g.shape[0], "rmsprop_step", "g")
    _same_len(n, sq.shape[0], "rmsprop_step", "sq")
    if buf is not None:
        _same_len(n, buf.shape[0], "rmsprop_step", "buf")
    if gavg is not None:
        _same_len(n, gavg.shape[0], "rmsprop_step", "gavg")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_rmsprop_step_f32(_p1(w), _p1(sq), _p1(buf), _p1(gavg), _c1(g), n,
                                      <float>lr, <float>alpha, <float>eps,
                                      <float>weight_decay, <float>momentum, centered,
                                      n_threads)
        else:
            st = fnn_rmsprop_step_f64(_p1(w), _p1(sq), _p1(buf), _p1(gavg), _c1(g), n, lr,
                                      alpha, eps, weight_decay, momentum, centered, n_threads)
        fnn_fpenv_pop()
    _check(st, "rmsprop_step")


def adagrad_step(floating[::1] w, const floating[::1] g, floating[::1] sum_sq, int64_t step,
                 double lr, double lr_decay, double weight_decay, double eps, int n_threads):
    """torch.optim.Adagrad step on w (n,) with accumulator sum_sq (n,)."""
    cdef int64_t n = w.shape[0]
    cdef int st
    _same_len(n, g.shape[0], "adagrad_step", "g")
    _same_len(n, sum_sq.shape[0], "adagrad_step", "sum_sq")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_adagrad_step_f32(_p1(w), _p1(sum_sq), _c1(g), n, <float>lr,
                                      <float>lr_decay, <float>weight_decay, <float>eps, step,
                                      n_threads)
        else:
            st = fnn_adagrad_step_f64(_p1(w), _p1(sum_sq), _c1(g), n, lr, lr_decay,
                                      weight_decay, eps, step, n_threads)
        fnn_fpenv_pop()
    _check(st, "adagrad_step")


def dropout_forward(floating[::1] out, uint8_t[::1] mask, const floating[::1] x, double p,
                    uint64_t seed, uint64_t offset, int n_threads):
    """out (n,) = x * keep / (1-p) and mask (n,) uint8 (or None) = keep, from (seed, offset)."""
    cdef int64_t n = x.shape[0]
    cdef int st
    cdef uint8_t *mp = NULL
    _same_len(n, out.shape[0], "dropout_forward", "out")
    if mask is not None:
        _same_len(n, mask.shape[0], "dropout_forward", "mask")
        if n > 0:
            mp = &mask[0]
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_dropout_forward_f32(_p1(out), mp, _c1(x), n, p, seed, offset, n_threads)
        else:
            st = fnn_dropout_forward_f64(_p1(out), mp, _c1(x), n, p, seed, offset, n_threads)
        fnn_fpenv_pop()
    _check(st, "dropout_forward")


def dropout_backward(floating[::1] dx, const floating[::1] dy, const uint8_t[::1] mask,
                     double p, int n_threads):
    """dx (n,) = dy * mask / (1-p) with the forward's mask (n,) uint8."""
    cdef int64_t n = dy.shape[0]
    cdef int st
    cdef const uint8_t *mp = NULL
    _same_len(n, dx.shape[0], "dropout_backward", "dx")
    _same_len(n, mask.shape[0], "dropout_backward", "mask")
    if n > 0:
        mp = &mask[0]
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_dropout_backward_f32(_p1(dx), _c1(dy), mp, n, p, n_threads)
        else:
            st = fnn_dropout_backward_f64(_p1(dx), _c1(dy), mp, n, p, n_threads)
        fnn_fpenv_pop()
    _check(st, "dropout_backward")
# ---------------------------------------------------------------------------
# Convolution and pooling (csrc/conv.c, csrc/pool.c), NCHW arrays.
# Each raw function derives the sizes from its arrays' shapes, checks that the
# outputs agree (a few integer compares) and calls one C kernel without the GIL.
# ---------------------------------------------------------------------------

# (the C declarations of this section are in _fastnn_c.pxd)

cdef inline floating *_p4(floating[:, :, :, ::1] v) noexcept nogil:
    """Pointer to a 4-D view's data, NULL for None or an empty view."""
    if v is None or v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0 or v.shape[3] == 0:
        return NULL
    return &v[0, 0, 0, 0]


cdef inline const floating *_c4(const floating[:, :, :, ::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0 or v.shape[3] == 0:
        return NULL
    return &v[0, 0, 0, 0]


cdef inline int64_t *_i4(int64_t[:, :, :, ::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0 or v.shape[3] == 0:
        return NULL
    return &v[0, 0, 0, 0]


cdef inline const int64_t *_ci4(const int64_t[:, :, :, ::1] v) noexcept nogil:
    if v is None or v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0 or v.shape[3] == 0:
        return NULL
    return &v[0, 0, 0, 0]


cdef inline int _same4(object v, int64_t a, int64_t b, int64_t c, int64_t d, str name) except -1:
    """ValueError unless the 4-D view v (or None) has shape (a, b, c, d)."""
    if v is not None and tuple(v.shape[:4]) != (a, b, c, d):
        raise ValueError(f"{name} must have shape {(a, b, c, d)}, got {tuple(v.shape[:4])}")
    return 0


cdef inline int64_t _osize(int64_t size, int64_t k, int64_t s, int64_t p):
    """Output size of a window k, stride s, padding p over size (floor mode); -1 if none."""
    if s < 1 or size + 2 * p < k:
        return -1
    return (size + 2 * p - k) // s + 1


def conv2d_workspace_size(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh,
                          int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                          int elem_size, int n_threads):
    """Bytes of workspace conv2d_forward / conv2d_backward need on n_threads threads.

    Arguments: batch n, in channels c, input h, w, out channels oc, kernel kh, kw,
    stride sh, sw, padding ph, pw, elem_size (4 float32, 8 float64), n_threads.
    """
    cdef size_t nbytes = 0
    _check(fnn_conv2d_workspace_size(&nbytes, n, c, h, w, oc, kh, kw, sh, sw, ph, pw,
                                     elem_size, n_threads), "conv2d_workspace_size")
    return nbytes


def conv2d_forward(floating[:, :, :, ::1] out, floating[:, :, :, ::1] z,
                   unsigned char[::1] work not None,
                   const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                   const floating[::1] b, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                   int act, int n_threads):
    """out = act(conv2d(x, w) + b); z (or None) = the pre-activation.

    Arguments, in order: out (n, oc, oh, ow); z (n, oc, oh, ow) or None;
    work (uint8 bytes, >= conv2d_workspace_size(...)); x (n, c, h, w);
    w (oc, c, kh, kw); b (oc,) or None; stride sh, sw; zero padding ph, pw;
    act (fnn_act code; softmax over channels); n_threads.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef int64_t oc = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef int64_t oh = _osize(h, kh, sh, ph), ow = _osize(wd, kw, sw, pw)
    cdef int st
    if w.shape[1] != c:
        raise ValueError(f"conv2d_forward: w has {w.shape[1]} input channels, x has {c}")
    if b is not None and b.shape[0] != oc:
        raise ValueError(f"conv2d_forward: b must have shape ({oc},), got ({b.shape[0]},)")
    if oh < 1 or ow < 1:
        raise ValueError("conv2d_forward: kernel larger than the padded input, or stride < 1")
    _same4(out, n, oc, oh, ow, "out")
    _same4(z, n, oc, oh, ow, "z")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_conv2d_forward_f32(_p4(out), _p4(z), &work[0] if work.shape[0] else NULL,
                                        work.shape[0], _c4(x), _c4(w), _c1(b), n, c, h, wd, oc,
                                        kh, kw, sh, sw, ph, pw, act, n_threads)
        else:
            st = fnn_conv2d_forward_f64(_p4(out), _p4(z), &work[0] if work.shape[0] else NULL,
                                        work.shape[0], _c4(x), _c4(w), _c1(b), n, c, h, wd, oc,
                                        kh, kw, sh, sw, ph, pw, act, n_threads)
        fnn_fpenv_pop()
    _check(st, "conv2d_forward")


def conv2d_backward(floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw, floating[::1] db,
                    unsigned char[::1] work not None, const floating[:, :, :, ::1] dout,
                    const floating[:, :, :, ::1] a, const floating[:, :, :, ::1] z,
                    const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                    int64_t sh, int64_t sw, int64_t ph, int64_t pw, int act, double beta_w,
                    int n_threads):
    """Backward of conv2d_forward: dx (or None), dw (+ beta_w dw), db (or None).

    Arguments, in order: dx (n, c, h, w) or None; dw (oc, c, kh, kw); db (oc,) or
    None; work (uint8 bytes); dout = dL/dout (n, oc, oh, ow); a = the forward's
    out (n, oc, oh, ow; may be None for identity); z = pre-activation or None
    (required for gelu, silu); x (n, c, h, w); w (oc, c, kh, kw); stride sh, sw;
    padding ph, pw; act code; beta_w (0 overwrites dw); n_threads.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef int64_t oc = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef int64_t oh = _osize(h, kh, sh, ph), ow = _osize(wd, kw, sw, pw)
    cdef int st
    if w.shape[1] != c:
        raise ValueError(f"conv2d_backward: w has {w.shape[1]} input channels, x has {c}")
    if oh < 1 or ow < 1:
        raise ValueError("conv2d_backward: kernel larger than the padded input, or stride < 1")
    _same4(dout, n, oc, oh, ow, "dout")
    _same4(a, n, oc, oh, ow, "a")
    _same4(z, n, oc, oh, ow, "z")
    _same4(dx, n, c, h, wd, "dx")
    if dw is None:
        raise ValueError(f"conv2d_backward: dw is required, of shape {(oc, c, kh, kw)}")
    _same4(dw, oc, c, kh, kw, "dw")
    if db is not None and db.shape[0] != oc:
        raise ValueError(f"conv2d_backward: db must have shape ({oc},), got ({db.shape[0]},)")
    if act != 0 and a is None:
        raise ValueError("conv2d_backward: a (the forward's output) is needed for this act")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_conv2d_backward_f32(_p4(dx), _p4(dw), _p1(db),
                                         &work[0] if work.shape[0] else NULL, work.shape[0],
                                         _c4(dout), _c4(a), _c4(z), _c4(x), _c4(w), n, c, h, wd,
                                         oc, kh, kw, sh, sw, ph, pw, act, <float>beta_w,
                                         n_threads)
        else:
            st = fnn_conv2d_backward_f64(_p4(dx), _p4(dw), _p1(db),
                                         &work[0] if work.shape[0] else NULL, work.shape[0],
                                         _c4(dout), _c4(a), _c4(z), _c4(x), _c4(w), n, c, h, wd,
                                         oc, kh, kw, sh, sw, ph, pw, act, beta_w, n_threads)
        fnn_fpenv_pop()
    _check(st, "conv2d_backward")


def maxpool2d_forward(floating[:, :, :, ::1] out, int64_t[:, :, :, ::1] idx,
                      const floating[:, :, :, ::1] x, int64_t kh, int64_t kw, int64_t sh,
                      int64_t sw, int64_t ph, int64_t pw, int n_threads):
    """out (n, c, oh, ow) = window maxima of x (n, c, h, w); idx (same shape, or None) =
    flat index y*w + x of each maximum within its input plane.

    Arguments, in order: out, idx, x, kernel kh, kw, stride sh, sw, padding ph, pw, n_threads.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef int64_t oh = _osize(h, kh, sh, ph), ow = _osize(wd, kw, sw, pw)
    cdef int st
    if oh < 1 or ow < 1:
        raise ValueError("maxpool2d_forward: kernel larger than the padded input, or stride < 1")
    _same4(out, n, c, oh, ow, "out")
    _same4(idx, n, c, oh, ow, "idx")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_maxpool2d_forward_f32(_p4(out), _i4(idx), _c4(x), n, c, h, wd, kh, kw, sh,
                                           sw, ph, pw, n_threads)
        else:
            st = fnn_maxpool2d_forward_f64(_p4(out), _i4(idx), _c4(x), n, c, h, wd, kh, kw, sh,
                                           sw, ph, pw, n_threads)
        fnn_fpenv_pop()
    _check(st, "maxpool2d_forward")


def maxpool2d_backward(floating[:, :, :, ::1] dx, const floating[:, :, :, ::1] dout,
                       const int64_t[:, :, :, ::1] idx, int n_threads):
    """dx (n, c, h, w) = dout (n, c, oh, ow) added at the flat plane indices idx (n, c, oh, ow).

    Arguments, in order: dx, dout, idx, n_threads.  An index outside the plane
    raises ValueError.
    """
    cdef int st
    _same4(idx, dout.shape[0], dout.shape[1], dout.shape[2], dout.shape[3], "idx")
    if dx.shape[0] != dout.shape[0] or dx.shape[1] != dout.shape[1]:
        raise ValueError("maxpool2d_backward: dx and dout differ in batch or channels")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_maxpool2d_backward_f32(_p4(dx), _c4(dout), _ci4(idx), dx.shape[0],
                                            dx.shape[1], dx.shape[2], dx.shape[3],
                                            dout.shape[2], dout.shape[3], n_threads)
        else:
            st = fnn_maxpool2d_backward_f64(_p4(dx), _c4(dout), _ci4(idx), dx.shape[0],
                                            dx.shape[1], dx.shape[2], dx.shape[3],
                                            dout.shape[2], dout.shape[3], n_threads)
        fnn_fpenv_pop()
    _check(st, "maxpool2d_backward (an index is outside its input plane)")


def avgpool2d_forward(floating[:, :, :, ::1] out, const floating[:, :, :, ::1] x, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int n_threads):
    """out (n, c, oh, ow) = window means of x (n, c, h, w), padding counted (divisor kh*kw).

    Arguments, in order: out, x, kernel kh, kw, stride sh, sw, padding ph, pw, n_threads.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef int64_t oh = _osize(h, kh, sh, ph), ow = _osize(wd, kw, sw, pw)
    cdef int st
    if oh < 1 or ow < 1:
        raise ValueError("avgpool2d_forward: kernel larger than the padded input, or stride < 1")
    _same4(out, n, c, oh, ow, "out")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_avgpool2d_forward_f32(_p4(out), _c4(x), n, c, h, wd, kh, kw, sh, sw, ph, pw,
                                           n_threads)
        else:
            st = fnn_avgpool2d_forward_f64(_p4(out), _c4(x), n, c, h, wd, kh, kw, sh, sw, ph, pw,
                                           n_threads)
        fnn_fpenv_pop()
    _check(st, "avgpool2d_forward")


def avgpool2d_backward(floating[:, :, :, ::1] dx, const floating[:, :, :, ::1] dout, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                       int n_threads):
    """dx (n, c, h, w) from dout (n, c, oh, ow): dout / (kh*kw) added over each window.

    Arguments, in order: dx, dout, kernel kh, kw, stride sh, sw, padding ph, pw, n_threads.
    """
    cdef int64_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], wd = dx.shape[3]
    cdef int64_t oh = _osize(h, kh, sh, ph), ow = _osize(wd, kw, sw, pw)
    cdef int st
    if oh < 1 or ow < 1:
        raise ValueError("avgpool2d_backward: kernel larger than the padded input, or stride < 1")
    _same4(dout, n, c, oh, ow, "dout")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_avgpool2d_backward_f32(_p4(dx), _c4(dout), n, c, h, wd, kh, kw, sh, sw, ph,
                                            pw, n_threads)
        else:
            st = fnn_avgpool2d_backward_f64(_p4(dx), _c4(dout), n, c, h, wd, kh, kw, sh, sw, ph,
                                            pw, n_threads)
        fnn_fpenv_pop()
    _check(st, "avgpool2d_backward")


def global_avgpool_forward(floating[:, ::1] out, const floating[:, :, :, ::1] x, int n_threads):
    """out (n, c) = mean of each (h, w) plane of x (n, c, h, w).  Arguments: out, x, n_threads."""
    cdef int st
    if out.shape[0] != x.shape[0] or out.shape[1] != x.shape[1]:
        raise ValueError(f"out must have shape {(x.shape[0], x.shape[1])}, "
                         f"got {(out.shape[0], out.shape[1])}")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_global_avgpool_forward_f32(_p2(out), _c4(x), x.shape[0], x.shape[1],
                                                x.shape[2], x.shape[3], n_threads)
        else:
            st = fnn_global_avgpool_forward_f64(_p2(out), _c4(x), x.shape[0], x.shape[1],
                                                x.shape[2], x.shape[3], n_threads)
        fnn_fpenv_pop()
    _check(st, "global_avgpool_forward")


def global_avgpool_backward(floating[:, :, :, ::1] dx, const floating[:, ::1] dout,
                            int n_threads):
    """dx (n, c, h, w) = dout (n, c) / (h*w) over each plane.  Arguments: dx, dout, n_threads."""
    cdef int st
    if dout.shape[0] != dx.shape[0] or dout.shape[1] != dx.shape[1]:
        raise ValueError(f"dout must have shape {(dx.shape[0], dx.shape[1])}, "
                         f"got {(dout.shape[0], dout.shape[1])}")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_global_avgpool_backward_f32(_p4(dx), _c2(dout), dx.shape[0], dx.shape[1],
                                                 dx.shape[2], dx.shape[3], n_threads)
        else:
            st = fnn_global_avgpool_backward_f64(_p4(dx), _c2(dout), dx.shape[0], dx.shape[1],
                                                 dx.shape[2], dx.shape[3], n_threads)
        fnn_fpenv_pop()
    _check(st, "global_avgpool_backward")


# ---- embeddings and the mean over a sequence (csrc/embed.c) -----------------
cdef int _check_index(int status, int64_t bad, const int64_t[::1] idx, int64_t v,
                      str name) except -1:
    """A bad embedding index as a ValueError naming its position and value."""
    if status == FNN_EINDEX:
        raise ValueError(f"{name}: index {idx[bad]} at position {bad} (of the flattened "
                         f"input) is outside [0, {v}) (num_embeddings = {v})")
    return _check(status, name)


def embedding_forward(floating[:, ::1] out, const int64_t[::1] idx, const floating[:, ::1] w,
                      int n_threads):
    """out (n, d) = w[idx] for idx (n,), w (v, d); ValueError for an index outside [0, v).

    Arguments: out, idx, w, n_threads.
    """
    cdef int st
    cdef int64_t bad = -1
    if out.shape[0] != idx.shape[0] or out.shape[1] != w.shape[1]:
        raise ValueError(f"out must have shape {(idx.shape[0], w.shape[1])}, "
                         f"got {(out.shape[0], out.shape[1])}")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_embedding_forward_f32(_p2(out), &bad, &idx[0] if idx.shape[0] else NULL,
                                           _c2(w), idx.shape[0], w.shape[0], w.shape[1],
                                           n_threads)
        else:
            st = fnn_embedding_forward_f64(_p2(out), &bad, &idx[0] if idx.shape[0] else NULL,
                                           _c2(w), idx.shape[0], w.shape[0], w.shape[1],
                                           n_threads)
        fnn_fpenv_pop()
    _check_index(st, bad, idx, w.shape[0], "embedding_forward")


def embedding_backward(floating[:, ::1] dw, const int64_t[::1] idx, const floating[:, ::1] dout,
                       double beta, int n_threads):
    """dw (v, d) = beta * dw + the rows of dout (n, d) added into the rows idx (n,) of dw.

    Deterministic (the same sums in the same order for every thread count).
    Arguments: dw, idx, dout, beta, n_threads.
    """
    cdef int st
    cdef int64_t bad = -1
    if dout.shape[0] != idx.shape[0] or dout.shape[1] != dw.shape[1]:
        raise ValueError(f"dout must have shape {(idx.shape[0], dw.shape[1])}, "
                         f"got {(dout.shape[0], dout.shape[1])}")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_embedding_backward_f32(_p2(dw), &bad, &idx[0] if idx.shape[0] else NULL,
                                            _c2(dout), idx.shape[0], dw.shape[0], dw.shape[1],
                                            <float>beta, n_threads)
        else:
            st = fnn_embedding_backward_f64(_p2(dw), &bad, &idx[0] if idx.shape[0] else NULL,
                                            _c2(dout), idx.shape[0], dw.shape[0], dw.shape[1],
                                            beta, n_threads)
        fnn_fpenv_pop()
    _check_index(st, bad, idx, dw.shape[0], "embedding_backward")


def global_avgpool1d_forward(floating[:, ::1] out, const floating[:, :, ::1] x, int n_threads):
    """out (n, d) = mean over l of x (n, l, d).  Arguments: out, x, n_threads."""
    cdef int st
    cdef int64_t n = x.shape[0], l = x.shape[1], d = x.shape[2]
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError(f"out must have shape {(n, d)}, got {(out.shape[0], out.shape[1])}")
    cdef const floating *xp = &x[0, 0, 0] if n and l and d else NULL
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_global_avgpool1d_forward_f32(_p2(out), xp, n, l, d, n_threads)
        else:
            st = fnn_global_avgpool1d_forward_f64(_p2(out), xp, n, l, d, n_threads)
        fnn_fpenv_pop()
    _check(st, "global_avgpool1d_forward")


def global_avgpool1d_backward(floating[:, :, ::1] dx, const floating[:, ::1] dout,
                              int n_threads):
    """dx (n, l, d) = dout (n, d) / l over the l axis.  Arguments: dx, dout, n_threads."""
    cdef int st
    cdef int64_t n = dx.shape[0], l = dx.shape[1], d = dx.shape[2]
    if dout.shape[0] != n or dout.shape[1] != d:
        raise ValueError(f"dout must have shape {(n, d)}, got {(dout.shape[0], dout.shape[1])}")
    cdef floating *dp = &dx[0, 0, 0] if n and l and d else NULL
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_global_avgpool1d_backward_f32(dp, _c2(dout), n, l, d, n_threads)
        else:
            st = fnn_global_avgpool1d_backward_f64(dp, _c2(dout), n, l, d, n_threads)
        fnn_fpenv_pop()
    _check(st, "global_avgpool1d_backward")


# ---- normalization (csrc/norm.c) ----------------------------------------------------
# Arrays are passed flat (C order) with their sizes: batch norm (n, c, s) with s = H*W
# (1 for (N, C) input), layer norm (rows, d).  Each length is checked before the call.

cdef int _norm_len(str kernel, int64_t n, int64_t c, int64_t s) except -1:
    if n < 0 or c < 0 or s < 0:
        raise ValueError(f"{kernel}: sizes must be >= 0, got ({n}, {c}, {s})")
    if n * <object>c * s >= 2**62:
        raise ValueError(f"{kernel}: array sizes overflow 64-bit indexing")
    return 0


def batchnorm_forward(floating[::1] out, floating[::1] mean, floating[::1] var,
                      const floating[::1] x, const floating[::1] weight,
                      const floating[::1] bias, const floating[::1] running_mean,
                      const floating[::1] running_var, int64_t n, int64_t c, int64_t s,
                      double eps, bint training, int n_threads):
    """Batch norm forward on flat (n*c*s,) x and out; per-channel (c,) weight, bias (or
    None), running_mean, running_var (read in eval), mean, var (written in training).
    Arguments: out, mean, var, x, weight, bias, running_mean, running_var, n, c, s, eps,
    training, n_threads."""
    cdef int st
    cdef str k = "batchnorm_forward"
    _norm_len(k, n, c, s)
    cdef int64_t total = n * c * s
    _s1(x, total, False, k, "x")
    _s1(out, total, False, k, "out")
    _s1(weight, c, True, k, "weight")
    _s1(bias, c, True, k, "bias")
    _s1(running_mean, c, training, k, "running_mean")
    _s1(running_var, c, training, k, "running_var")
    _s1(mean, c, not training, k, "mean")
    _s1(var, c, not training, k, "var")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_batchnorm_forward_f32(_p1(out), _p1(mean), _p1(var), _c1(x), _c1(weight),
                                           _c1(bias), _c1(running_mean), _c1(running_var), n,
                                           c, s, eps, training, n_threads)
        else:
            st = fnn_batchnorm_forward_f64(_p1(out), _p1(mean), _p1(var), _c1(x), _c1(weight),
                                           _c1(bias), _c1(running_mean), _c1(running_var), n,
                                           c, s, eps, training, n_threads)
        fnn_fpenv_pop()
    _check(st, k)


def batchnorm_backward(floating[::1] dx, floating[::1] dweight, floating[::1] dbias,
                       const floating[::1] dy, const floating[::1] x,
                       const floating[::1] mean, const floating[::1] var,
                       const floating[::1] weight, int64_t n, int64_t c, int64_t s,
                       double eps, bint training, int n_threads):
    """Batch norm backward: dx (n*c*s,) (or None), dweight, dbias (c,) (or None) from dy,
    x (n*c*s,) and the forward's mean, var and weight (c,).  Arguments: dx, dweight,
    dbias, dy, x, mean, var, weight, n, c, s, eps, training, n_threads."""
    cdef int st
    cdef str k = "batchnorm_backward"
    _norm_len(k, n, c, s)
    cdef int64_t total = n * c * s
    _s1(dy, total, False, k, "dy")
    _s1(x, total, False, k, "x")
    _s1(dx, total, True, k, "dx")
    _s1(dweight, c, True, k, "dweight")
    _s1(dbias, c, True, k, "dbias")
    _s1(mean, c, False, k, "mean")
    _s1(var, c, False, k, "var")
    _s1(weight, c, True, k, "weight")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_batchnorm_backward_f32(_p1(dx), _p1(dweight), _p1(dbias), _c1(dy), _c1(x),
                                            _c1(mean), _c1(var), _c1(weight), n, c, s, eps,
                                            training, n_threads)
        else:
            st = fnn_batchnorm_backward_f64(_p1(dx), _p1(dweight), _p1(dbias), _c1(dy), _c1(x),
                                            _c1(mean), _c1(var), _c1(weight), n, c, s, eps,
                                            training, n_threads)
        fnn_fpenv_pop()
    _check(st, k)


def batchnorm_update_stats(floating[::1] running_mean, floating[::1] running_var,
                           const floating[::1] mean, const floating[::1] var, int64_t count,
                           double momentum):
    """running = (1 - momentum) running + momentum batch (variance unbiased over count
    values), in place; all (c,).  Arguments: running_mean, running_var, mean, var, count,
    momentum."""
    cdef int st
    cdef str k = "batchnorm_update_stats"
    if running_mean is None:
        raise ValueError(f"{k}: running_mean is required")
    cdef int64_t c = running_mean.shape[0]
    _s1(running_var, c, False, k, "running_var")
    _s1(mean, c, False, k, "mean")
    _s1(var, c, False, k, "var")
    with nogil:
        if floating is float:
            st = fnn_batchnorm_update_stats_f32(_p1(running_mean), _p1(running_var), _c1(mean),
                                                _c1(var), c, count, momentum)
        else:
            st = fnn_batchnorm_update_stats_f64(_p1(running_mean), _p1(running_var), _c1(mean),
                                                _c1(var), c, count, momentum)
    _check(st, k + " (count must be >= 2, momentum in [0, 1])")


def layernorm_forward(floating[::1] out, floating[::1] mean, floating[::1] rstd,
                      const floating[::1] x, const floating[::1] weight,
                      const floating[::1] bias, int64_t rows, int64_t d, double eps,
                      int n_threads):
    """Layer norm forward on flat (rows*d,) x and out; weight, bias (d,) or None; mean,
    rstd (rows,) written.  Arguments: out, mean, rstd, x, weight, bias, rows, d, eps,
    n_threads."""
    cdef int st
    cdef str k = "layernorm_forward"
    _norm_len(k, rows, d, 1)
    cdef int64_t total = rows * d
    _s1(x, total, False, k, "x")
    _s1(out, total, False, k, "out")
    _s1(weight, d, True, k, "weight")
    _s1(bias, d, True, k, "bias")
    _s1(mean, rows, False, k, "mean")
    _s1(rstd, rows, False, k, "rstd")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_layernorm_forward_f32(_p1(out), _p1(mean), _p1(rstd), _c1(x), _c1(weight),
                                           _c1(bias), rows, d, eps, n_threads)
        else:
            st = fnn_layernorm_forward_f64(_p1(out), _p1(mean), _p1(rstd), _c1(x), _c1(weight),
                                           _c1(bias), rows, d, eps, n_threads)
        fnn_fpenv_pop()
    _check(st, k)


def layernorm_backward(floating[::1] dx, floating[::1] dweight, floating[::1] dbias,
                       const floating[::1] dy, const floating[::1] x,
                       const floating[::1] mean, const floating[::1] rstd,
                       const floating[::1] weight, int64_t rows, int64_t d, int n_threads):
    """Layer norm backward: dx (rows*d,) (or None), dweight, dbias (d,) (or None) from dy,
    x (rows*d,), the forward's mean, rstd (rows,) and weight (d,) or None.  Arguments:
    dx, dweight, dbias, dy, x, mean, rstd, weight, rows, d, n_threads."""
    cdef int st
    cdef str k = "layernorm_backward"
    _norm_len(k, rows, d, 1)
    cdef int64_t total = rows * d
    _s1(dy, total, False, k, "dy")
    _s1(x, total, False, k, "x")
    _s1(dx, total, True, k, "dx")
    _s1(dweight, d, True, k, "dweight")
    _s1(dbias, d, True, k, "dbias")
    _s1(mean, rows, False, k, "mean")
    _s1(rstd, rows, False, k, "rstd")
    _s1(weight, d, True, k, "weight")
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            st = fnn_layernorm_backward_f32(_p1(dx), _p1(dweight), _p1(dbias), _c1(dy), _c1(x),
                                            _c1(mean), _c1(rstd), _c1(weight), rows, d,
                                            n_threads)
        else:
            st = fnn_layernorm_backward_f64(_p1(dx), _p1(dweight), _p1(dbias), _c1(dy), _c1(x),
                                            _c1(mean), _c1(rstd), _c1(weight), rows, d,
                                            n_threads)
        fnn_fpenv_pop()
    _check(st, k)


# ---- a Dense-only network's training step in one call (csrc/mlp.c) ----------
from libc.stdlib cimport calloc, free

# (the C declarations of this section are in _fastnn_c.pxd)

cdef void *_addr(object arr, int64_t size, int itemsize, bint optional, str what) except? NULL:
    """Data pointer of a C-contiguous, writable-or-not array of `size` elements of
    `itemsize` bytes (None -> NULL when optional); read once, when a plan is built."""
    if arr is None:
        if optional:
            return NULL
        raise ValueError(f"MLPPlan: {what} is required")
    if not arr.flags.c_contiguous:
        raise ValueError(f"MLPPlan: {what} must be C-contiguous")
    if arr.size != size or arr.itemsize != itemsize or arr.dtype.kind != "f":
        raise ValueError(f"MLPPlan: {what} must hold {size} floats of {itemsize} bytes, got "
                         f"{arr.size} of dtype {arr.dtype}")
    return <void *><size_t>arr.__array_interface__["data"][0]


cdef class MLPPlan:
    """The raw pointers of a Dense-only network's parameters, gradients and work
    buffers for one batch size, so that a training step (forward, loss, backward)
    is one C call.  Holds references to every array it points into.

    MLPPlan(is_f32, batch, first_trainable, in_sizes, out_sizes, acts, w, b, gw, gb,
            a, z, dx, gout): lists with one entry per layer (None where a buffer is
            absent); a[l], z[l] (batch, out), dx[l] (batch, in), gout (batch, out[-1]).
    """
    cdef fnn_mlp net
    cdef void **ptrs
    cdef object keep
    cdef readonly bint is_f32
    cdef readonly int64_t batch

    def __cinit__(self, bint is_f32, int64_t batch, int64_t first_trainable, list in_sizes,
                  list out_sizes, list acts, list w, list b, list gw, list gb, list a, list z,
                  list dx, object gout):
        cdef int64_t L = len(in_sizes), l, k
        cdef list groups = [w, b, gw, gb, a, z, dx]
        for grp in groups:
            if len(grp) != L or len(out_sizes) != L or len(acts) != L:
                raise ValueError("MLPPlan: every list needs one entry per layer")
        self.ptrs = <void **>calloc(7 * L + 1, sizeof(void *))
        self.net.in_ = <int64_t *>calloc(2 * L + 1, sizeof(int64_t))
        self.net.act = <int *>calloc(L + 1, sizeof(int))
        if self.ptrs == NULL or self.net.in_ == NULL or self.net.act == NULL:
            raise MemoryError()
        self.net.out = self.net.in_ + L
        cdef int isz = 4 if is_f32 else 8
        cdef int64_t ni, no
        cdef tuple names = ("w", "b", "gw", "gb", "a", "z", "dx")
        if L < 1 or batch < 1 or not 0 <= first_trainable <= L:
            raise ValueError("MLPPlan: needs a layer, a batch >= 1 and 0 <= first_trainable <= L")
        for l in range(L):
            ni, no = in_sizes[l], out_sizes[l]
            if ni < 1 or no < 1 or (l > 0 and ni != out_sizes[l - 1]):
                raise ValueError(f"MLPPlan: layer {l} sizes ({ni}, {no}) do not chain")
            self.net.in_[l] = ni
            self.net.out[l] = no
            self.net.act[l] = acts[l]
            # sizes of w, b, gw, gb, a, z, dx; b, gw/gb (frozen), z and dx may be absent
            sizes = (ni * no, no, ni * no, no, batch * no, batch * no, batch * ni)
            for k in range(7):
                self.ptrs[k * L + l] = _addr(groups[k][l], sizes[k], isz, k not in (0, 4),
                                             f"{names[k]}[{l}]")
        self.net.gout = _addr(gout, batch * out_sizes[L - 1], isz, False, "gout")
        self.net.w, self.net.b = self.ptrs, self.ptrs + L
        self.net.gw, self.net.gb = self.ptrs + 2 * L, self.ptrs + 3 * L
        self.net.a, self.net.z, self.net.dx = self.ptrs + 4 * L, self.ptrs + 5 * L, self.ptrs + 6 * L
        self.net.n_layers = L
        self.net.first_trainable = first_trainable
        self.keep = (groups, gout)
        self.is_f32 = is_f32
        self.batch = batch

    def __dealloc__(self):
        free(self.ptrs)
        free(self.net.in_)
        free(self.net.act)

    def run(self, x, labels, target, int loss_kind, int n_threads):
        """Forward, loss and backward of batch x (batch, in[0]); returns the loss.

        labels: int64 (batch,) for cross-entropy with labels, else None; target:
        (batch, out[-1]) of the plan's dtype, else None.
        """
        cdef double loss = 0.0
        cdef int st
        cdef const int64_t[::1] lab
        cdef const int64_t *labp = NULL
        cdef const float[:, ::1] x32
        cdef const double[:, ::1] x64
        cdef const float[:, ::1] t32
        cdef const double[:, ::1] t64
        if x.shape[0] != self.batch or x.shape[1] != self.net.in_[0]:
            raise ValueError(f"MLPPlan.run: x must have shape ({self.batch}, "
                             f"{self.net.in_[0]}), got {x.shape}")
        if labels is not None:
            lab = labels
            if lab.shape[0] != self.batch:
                raise ValueError("MLPPlan.run: labels must have one entry per row")
            labp = &lab[0]
        elif target is None:
            raise ValueError("MLPPlan.run: labels or target is required")
        if target is not None and tuple(target.shape) != (self.batch,
                                                          self.net.out[self.net.n_layers - 1]):
            raise ValueError(f"MLPPlan.run: target must have shape ({self.batch}, "
                             f"{self.net.out[self.net.n_layers - 1]}), got {target.shape}")
        if self.is_f32:
            x32 = x
            if target is not None:
                t32 = target
            with nogil:
                fnn_fpenv_push()
                st = fnn_mlp_step_f32(&loss, &self.net, &x32[0, 0], labp,
                                      &t32[0, 0] if target is not None else NULL, self.batch,
                                      loss_kind, n_threads)
                fnn_fpenv_pop()
        else:
            x64 = x
            if target is not None:
                t64 = target
            with nogil:
                fnn_fpenv_push()
                st = fnn_mlp_step_f64(&loss, &self.net, &x64[0, 0], labp,
                                      &t64[0, 0] if target is not None else NULL, self.batch,
                                      loss_kind, n_threads)
                fnn_fpenv_pop()
        _check(st, "train_step")
        return loss


def all_finite(const floating[::1] x):
    """True when every element of the flat array x (n,) is finite (one C pass)."""
    cdef int ok
    with nogil:
        fnn_fpenv_push()
        if floating is float:
            ok = fnn_all_finite_f32(_c1(x), x.shape[0])
        else:
            ok = fnn_all_finite_f64(_c1(x), x.shape[0])
        fnn_fpenv_pop()
    return bool(ok)
