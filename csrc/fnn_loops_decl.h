/* fnn_loops_decl.h -- the per-ISA loop tables for one element type (T, SFX),
 * instantiated for both dtypes by fnn_internal.h.  The loops themselves are
 * written once in fnn_loops_impl.h and compiled once per ISA (isa_*.c).
 *
 * A range loop fn(args, lo, hi) processes elements [lo, hi) of one call whose
 * operands and scalars are in *args; elements are independent, so a call's
 * result does not depend on how [0, n) is split across threads. */

/* Optimizer steps (optim_impl.h documents the math). */
typedef struct {
    T *w, *buf;
    const T *g;
    T lr, momentum, damp1, weight_decay;
    int nesterov, first_step, use_wd, use_mom;
} SFX(fnn_sgd_args);
typedef struct {
    T *w, *m, *v, *vmax;
    const T *g;
    T beta1, beta2, one_b1, one_b2, eps, weight_decay, step_size, bc2_sqrt, shrink;
    int couple_wd, use_shrink;
} SFX(fnn_adam_args);
typedef struct {
    T *w, *sq, *buf, *gavg;
    const T *g;
    T lr, alpha, one_a, eps, weight_decay, momentum;
    int centered, use_wd, use_mom;
} SFX(fnn_rmsprop_args);
typedef struct {
    T *w, *sum;
    const T *g;
    T clr, weight_decay, eps;
    int use_wd;
} SFX(fnn_adagrad_args);

/* Dropout (dropout.c documents the RNG): forward out = x * (keep * scale),
 * mask = keep (mask may be NULL; thr == 0 means p == 0: keep everything);
 * backward dx = dy * (mask * scale). */
typedef struct {
    T *out;
    uint8_t *mask;
    const T *x;
    uint64_t seed, offset, thr;
    T scale;
} SFX(fnn_dropout_fwd_args);
typedef struct {
    T *dx;
    const T *dy;
    const uint8_t *mask;
    T scale;
} SFX(fnn_dropout_bwd_args);

typedef struct {
    void (*sgd)(const SFX(fnn_sgd_args) *a, int64_t lo, int64_t hi);
    void (*adam)(const SFX(fnn_adam_args) *a, int64_t lo, int64_t hi);
    void (*rmsprop)(const SFX(fnn_rmsprop_args) *a, int64_t lo, int64_t hi);
    void (*adagrad)(const SFX(fnn_adagrad_args) *a, int64_t lo, int64_t hi);
    void (*dropout_fwd)(const SFX(fnn_dropout_fwd_args) *a, int64_t lo, int64_t hi);
    void (*dropout_bwd)(const SFX(fnn_dropout_bwd_args) *a, int64_t lo, int64_t hi);
    /* 1 when every x[0:n] is finite */
    int (*all_finite)(const T *x, int64_t n);
    /* y[0:n] = act(x[0:n]) for an elementwise act (not softmax); y may alias x */
    void (*act_row)(T *y, const T *x, int64_t n, int act);
    /* dz[0:n] = da * act'(z) from a = act(z) and (gelu, silu) z; softmax: the row's JVP */
    void (*act_grad_row)(T *dz, const T *da, const T *a, const T *z, int64_t n, int act);
    /* losses (loss_impl.h documents them), each returning its sum in double and
     * writing its gradient when grad != NULL: one row of softmax cross-entropy
     * (label >= 0, else probability row t), mse and bce over [0, n) */
    double (*ce_row)(T *grad, const T *x, int64_t label, const T *t, int64_t classes, T inv_b);
    double (*mse)(T *grad, const T *pred, const T *target, int64_t n, T scale);
    double (*bce)(T *grad, const T *logits, const T *target, int64_t n, T inv_n);
    /* g[0:n] += wd * w; returns sum w^2 in double (optim_impl.h's fnn_l2_grad) */
    double (*l2_grad)(T *g, const T *w, int64_t n, T wd);
} SFX(fnn_loops);

/* The conv forward micro-kernel of an ISA (NULL ukr: the conv driver uses the
 * GEMM engine's micro-kernel, with the bias as a ones row of K).  One MR x NR
 * tile: C = Ap @ Bp (+ bias[row] when bias != NULL) (+ C when beta != 0),
 * Ap an MR-tall packed panel and Bp k rows of NR values, both of k steps. */
typedef void (*SFX(fnn_conv_ukr))(int64_t k, const T *ap, const T *bp, T *c, int64_t ldc,
                                  const T *bias, T beta);
typedef struct {
    int64_t mr, nr;
    SFX(fnn_conv_ukr) ukr;
} SFX(fnn_conv_cfg);
