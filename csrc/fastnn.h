/*
 * fastnn.h -- the whole C API of fastnn's kernels.
 *
 * Conventions:
 *   - row-major, C-contiguous arrays; sizes and leading dimensions explicit;
 *   - outputs first, then inputs, then sizes, then options;
 *   - every kernel exists as _f32 and _f64, generated from one type-generic
 *     source (a csrc/x_impl.h included twice);
 *   - every kernel returns an int status: FNN_OK or a negative FNN_E* code;
 *   - kernels never allocate on the hot path except the GEMM engine's packing
 *     buffers, which are allocated once per thread and reused (see gemm.c).
 */
#ifndef FASTNN_H
#define FASTNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */
#define FNN_OK 0
#define FNN_EINVAL (-1)    /* an argument is out of its domain              */
#define FNN_ENOMEM (-2)    /* a workspace could not be allocated            */
#define FNN_EOVERFLOW (-3) /* a size product overflows                      */
#define FNN_ELABEL (-4)    /* a class label is outside [0, n_classes)       */
#define FNN_EINDEX (-5)    /* an embedding index is outside [0, num_embeddings) */

/* ---- activations ------------------------------------------------------- */
typedef enum {
    FNN_ACT_IDENTITY = 0,
    FNN_ACT_SIGMOID = 1,
    FNN_ACT_TANH = 2,
    FNN_ACT_RELU = 3,
    FNN_ACT_LEAKY_RELU = 4, /* slope 0.01 (PyTorch's default)              */
    FNN_ACT_ELU = 5,        /* alpha 1.0                                    */
    FNN_ACT_GELU = 6,       /* exact: x * Phi(x), Phi from erf              */
    FNN_ACT_SOFTPLUS = 7,   /* beta 1, log1p(exp(-|x|)) + max(x, 0)         */
    FNN_ACT_SILU = 8,       /* x * sigmoid(x)                               */
    FNN_ACT_SOFTMAX = 9,    /* over the last axis (rows)                    */
    FNN_ACT_COUNT = 10
} fnn_act;

/* 1 when act's derivative needs the pre-activation z (not only a = act(z)). */
int fnn_act_needs_z(int act);

/* ---- run-time CPU dispatch: the ISA registry (cpu.c, isa_*.c) ----------- */
/* Instruction-set levels.  On one architecture they form a chain, ranked by
 * their order in cpu.c's level table (best first: avx512 > avx2 > generic on
 * x86-64, neon > generic on arm64); the ids themselves are names, not ranks
 * (neon's id is above avx512's).  Each level is one csrc/isa_<name>.c file
 * that registers everything it provides (GEMM blocking and micro-kernels,
 * packing, the conv kernel, the elementwise and optimizer loops, all_finite)
 * into one context; what a level does not provide it inherits from the level
 * below. */
typedef enum {
    FNN_ISA_GENERIC = 0, /* the build's baseline (SSE2 on x86-64, NEON on arm64) */
    FNN_ISA_AVX2 = 1,    /* AVX2 + FMA                                          */
    FNN_ISA_AVX512 = 2,  /* AVX-512 F + BW + VL + DQ (with AVX2 + FMA)           */
    FNN_ISA_AVX512_BF16 = 3, /* + AVX512-BF16 (VDPBF16PS): the bf16 GEMM only        */
    FNN_ISA_AMX = 4,     /* + AMX-TILE + AMX-BF16 (TDPBF16PS): the bf16 GEMM only  */
    FNN_ISA_NEON = 5,    /* arm64 Advanced SIMD, 32 vector registers (baseline)  */
    FNN_ISA_COUNT = 6
} fnn_isa_level;

/* Detect the CPU once (thread-safe) and fill the registry with the best level
 * that the CPU and the OS support, capped by the environment variable
 * FASTNN_ISA=generic|avx2|avx512|avx512_bf16|amx (x86-64) or generic|neon (arm64).
 * An unknown or unavailable value falls back
 * to the best allowed level; fnn_isa_request() says what happened so that a
 * caller can warn.  Returns the level chosen.  Idempotent. */
int fnn_init(void);
int fnn_isa(void);
/* "generic", "avx2", "avx512", "avx512_bf16", "amx", "neon"; "unknown" outside [0, FNN_ISA_COUNT). */
const char *fnn_isa_name(int isa);
/* 1 if the CPU and the OS support level isa (the check cpu.c uses). */
int fnn_isa_supported(int isa);

/* What became of FASTNN_ISA: FNN_ISA_REQ_NONE (unset or empty), _OK (honoured),
 * _UNKNOWN (not a level name), _UNAVAILABLE (a level this CPU or build lacks). */
#define FNN_ISA_REQ_NONE 0
#define FNN_ISA_REQ_OK 1
#define FNN_ISA_REQ_UNKNOWN 2
#define FNN_ISA_REQ_UNAVAILABLE 3
int fnn_isa_request(void);

/* Kernel families and the level each one runs at (a level may leave a family
 * to a lower level's kernels). */
typedef enum {
    FNN_FAM_GEMM_F32 = 0,
    FNN_FAM_GEMM_F64 = 1,
    FNN_FAM_CONV_F32 = 2, /* the conv forward micro-kernel (else the GEMM one) */
    FNN_FAM_CONV_F64 = 3,
    FNN_FAM_ACTIVATION = 4, /* activation forward/backward rows, GEMM epilogue  */
    FNN_FAM_DROPOUT = 5,
    FNN_FAM_OPTIMIZER = 6,
    FNN_FAM_ALL_FINITE = 7,
    FNN_FAM_LOSS = 8, /* cross-entropy, mse, bce                             */
    FNN_FAM_GEMM_BF16 = 9, /* the bf16 GEMM micro-kernel (matmul precision bf16) */
    FNN_FAM_COUNT = 10
} fnn_family;
const char *fnn_family_name(int family); /* "gemm_f32", ...; NULL when out of range */
int fnn_family_isa(int family);          /* the fnn_isa_level it runs at      */

/* CPU features (bit i of fnn_cpu_features(), named by fnn_cpu_feature_name(i)),
 * each as the CPU reports it and, for register state, as the OS enables it. */
#define FNN_CPU_AVX2 0
#define FNN_CPU_FMA 1
#define FNN_CPU_AVX512F 2
#define FNN_CPU_AVX512BW 3
#define FNN_CPU_AVX512VL 4
#define FNN_CPU_AVX512DQ 5
#define FNN_CPU_AVX512_BF16 6
#define FNN_CPU_AMX_TILE 7
#define FNN_CPU_AMX_BF16 8
#define FNN_CPU_AMX_INT8 9
#define FNN_CPU_FEATURE_COUNT 10
uint32_t fnn_cpu_features(void);
const char *fnn_cpu_feature_name(int bit); /* NULL when out of range */
/* 1 if the CPU (and OS) supports AVX2 + FMA. */
int fnn_cpu_has_avx2(void);
/* Block sizes of the GEMM engine in use for a dtype (elem_size 4 or 8). */
void fnn_gemm_blocking(int elem_size, int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc,
                       int64_t *nc);
int fnn_openmp_enabled(void);
/* 1 in the test build whose AVX-512 code runs on SIMDe (-DFNN_SIMDE_AVX512). */
int fnn_isa_emulated(void);
/* The float32 FMA peak with the widest vectors of the level in use (fma_peak.c):
 * 12 chains per thread for about `seconds`; *wall = GFLOP/s of all n_threads
 * threads by the wall clock, *cpu = the sum of the threads' rates per CPU-second,
 * *width = vector bits used (512, 256, or 0 for the compiler's baseline code). */
int fnn_fma_peak(double *wall, double *cpu, int *width, double seconds, int n_threads);

/* ---- floating-point environment: subnormals (cpu.c) -------------------- */
/* With flushing on (the default, as in JAX and TensorFlow), kernels run with
 * the x86 MXCSR's FTZ (results that would be subnormal become 0) and DAZ
 * (subnormal inputs read as 0) bits set; off, with both cleared (IEEE gradual
 * underflow).  A process-wide setting read at each call.  A caller wraps each
 * kernel call in enter/leave (the Python module does), and the kernels do the
 * same on every OpenMP worker inside their parallel regions, so every thread
 * doing the work runs in the chosen mode and the caller's MXCSR is restored
 * after.  No-ops (enter returns 0) where there is no MXCSR. */
void fnn_set_flush_denormal(int on);
int fnn_get_flush_denormal(void);
unsigned fnn_fpenv_enter(void); /* returns the state to give back to leave */
void fnn_fpenv_leave(unsigned saved);
/* The calling thread's MXCSR (0 where there is none) and a setter: test helpers. */
unsigned fnn_mxcsr_get(void);
void fnn_mxcsr_set(unsigned v);

/* ---- shared size helpers ------------------------------------------------ */
/* Output length of a window of size k, stride s, padding p on each side of
 * an input of length n (floor mode): (n + 2p - k) / s + 1, or -1 when the
 * sizes are out of domain (n < 0, k < 1, s < 1, p < 0, n + 2p < k). */
int64_t fnn_window_out_size(int64_t n, int64_t k, int64_t s, int64_t p);

/* ---- GEMM (gemm.c) ----------------------------------------------------- */
/* Epilogue applied to each tile of C after its last K block, while the tile
 * is still in L1: c = act(c + bias[col]); the value before the activation is
 * stored to z (row stride ldz) when z is not NULL.  A NULL epilogue, or one
 * with bias == NULL and act == FNN_ACT_IDENTITY and z == NULL, is a plain
 * GEMM.  FNN_ACT_SOFTMAX is not allowed here (it spans whole rows). */
typedef struct {
    const void *bias; /* (n,) of the GEMM's dtype, or NULL */
    int act;          /* fnn_act, never FNN_ACT_SOFTMAX    */
    void *z;          /* (m, ldz) pre-activation out, or NULL */
    int64_t ldz;
} fnn_epilogue;

/* C = alpha * op(A) @ op(B) + beta * C, then the epilogue.
 *   op(A) is (m, k): A is (m, lda>=k) when trans_a == 0, (k, lda>=m) otherwise;
 *   op(B) is (k, n): B is (k, ldb>=n) when trans_b == 0, (n, ldb>=k) otherwise;
 *   C is (m, ldc>=n).  beta == 0 overwrites C without reading it.
 * n_threads <= 0 means 1.  Threads split the M (ic) loop, and the N (jr) loop
 * when M is small; below a work threshold the call stays on one thread. */
int fnn_gemm_f32(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                 int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b, float alpha,
                 float beta, const fnn_epilogue *ep, int n_threads);
int fnn_gemm_f64(double *c, const double *a, const double *b, int64_t m, int64_t n, int64_t k,
                 int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b, double alpha,
                 double beta, const fnn_epilogue *ep, int n_threads);

/* ---- bfloat16 matmul precision (gemm_bf16.c) ------------------------- */
/* With precision FNN_PREC_BF16, every float GEMM (fnn_gemm_f32, hence Dense
 * forward/backward, the conv backward, the one-call MLP step; the conv forward
 * through im2col + GEMM) rounds its two operands to bfloat16 while packing them
 * and multiplies them with float32 accumulation: alpha, beta, C, the bias and
 * the epilogue stay float32.  double GEMMs ignore the setting.
 * The operand conversion (fnn_f32_to_bf16): round to nearest even; a NaN stays
 * a (quiet) NaN, values past the largest bf16 become +-Inf; a subnormal float
 * (|x| < 2^-126) becomes a signed zero whatever the flush setting (AVX512-BF16
 * and AMX read bf16 subnormals as zero, so every level does the same).
 * The precision in force for a call is this thread's override when set, else
 * the process-wide setting; OpenMP regions that call the GEMM pass it on. */
#define FNN_PREC_F32 0
#define FNN_PREC_BF16 1
void fnn_set_matmul_precision(int prec); /* process-wide */
int fnn_get_matmul_precision(void);      /* process-wide */
/* This thread's override (-1: none, follow the process); returns the previous one. */
int fnn_set_thread_matmul_precision(int prec);
/* The precision in force on this thread. */
int fnn_matmul_precision(void);
/* dst[0:n] = bf16 bits of src[0:n] (the conversion above). */
void fnn_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
/* fnn_gemm_f32 with precision bf16 for this call, whatever the setting. */
int fnn_gemm_bf16(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                  int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b, float alpha,
                  float beta, const fnn_epilogue *ep, int n_threads);
/* The bf16 GEMM blocking in use (MR, NR, MC, KC, NC). */
void fnn_gemm_bf16_blocking(int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc, int64_t *nc);

/* ---- activations (activation.c) ---------------------------------------- */
/* out = act(x); x, out are (rows, cols); softmax is taken over each row.
 * out may alias x. */
int fnn_act_forward_f32(float *out, const float *x, int64_t rows, int64_t cols, int act);
int fnn_act_forward_f64(double *out, const double *x, int64_t rows, int64_t cols, int act);

/* dz = da * act'(z), computed from a = act(z) and, when fnn_act_needs_z(act),
 * from z.  All (rows, cols); z may be NULL when not needed.  For softmax the
 * Jacobian-vector product per row: dz = a * (da - sum(da * a)).
 * When dbias is not NULL, dbias[j] = sum_i dz[i, j] (beta = 0: overwritten)
 * in the same pass.  dz may alias da. */
int fnn_act_backward_f32(float *dz, float *dbias, const float *da, const float *a,
                         const float *z, int64_t rows, int64_t cols, int act);
int fnn_act_backward_f64(double *dz, double *dbias, const double *da, const double *a,
                         const double *z, int64_t rows, int64_t cols, int act);

/* ---- dense layer (dense.c) --------------------------------------------- */
/* x is (batch, in), w is (in, out), b is (out,) or NULL, a is (batch, out),
 * z is (batch, out) or NULL: a = act(x @ w + b), z = x @ w + b when z != NULL.
 * Bias and activation run in the GEMM epilogue (softmax in one pass after). */
int fnn_dense_forward_f32(float *a, float *z, const float *x, const float *w, const float *b,
                          int64_t batch, int64_t in, int64_t out, int act, int n_threads);
int fnn_dense_forward_f64(double *a, double *z, const double *x, const double *w,
                          const double *b, int64_t batch, int64_t in, int64_t out, int act,
                          int n_threads);

/* Backward of dense_forward.
 *   da (batch, out) upstream gradient dL/da; a, z as saved by the forward
 *   (z may be NULL unless fnn_act_needs_z(act)); x (batch, in); w (in, out).
 *   delta (batch, out) workspace receiving dL/dz (may alias da);
 *   dw (in, out) = x^T delta (+ beta_w * dw), or NULL to skip (frozen layer);
 *   db (out,) = sum_batch delta
 *   (or NULL); dx (batch, in) = delta w^T, or NULL to skip (first layer). */
int fnn_dense_backward_f32(float *dx, float *dw, float *db, float *delta, const float *da,
                           const float *a, const float *z, const float *x, const float *w,
                           int64_t batch, int64_t in, int64_t out, int act, float beta_w,
                           int n_threads);
int fnn_dense_backward_f64(double *dx, double *dw, double *db, double *delta, const double *da,
                           const double *a, const double *z, const double *x, const double *w,
                           int64_t batch, int64_t in, int64_t out, int act, double beta_w,
                           int n_threads);

/* ---- losses (loss.c) ---------------------------------------------------- */
/* Each computes the loss value (returned in *loss, accumulated in double) and
 * its gradient with respect to the input in one pass.  grad may be NULL. */

/* Softmax cross-entropy from logits (batch, classes), mean over the batch.
 * Targets are integer labels (batch,) when labels != NULL, else probability
 * rows target (batch, classes) (one-hot or soft).  A label outside
 * [0, classes) returns FNN_ELABEL before anything is written. */
int fnn_cross_entropy_f32(double *loss, float *grad, const float *logits, const int64_t *labels,
                          const float *target, int64_t batch, int64_t classes);
int fnn_cross_entropy_f64(double *loss, double *grad, const double *logits,
                          const int64_t *labels, const double *target, int64_t batch,
                          int64_t classes);
/* Mean squared error over all n elements. */
int fnn_mse_f32(double *loss, float *grad, const float *pred, const float *target, int64_t n);
int fnn_mse_f64(double *loss, double *grad, const double *pred, const double *target, int64_t n);
/* Binary cross-entropy from logits (BCEWithLogits), mean over all n elements. */
int fnn_bce_logits_f32(double *loss, float *grad, const float *logits, const float *target,
                       int64_t n);
int fnn_bce_logits_f64(double *loss, double *grad, const double *logits, const double *target,
                       int64_t n);

/* ---- optimizers (optim.c) ---------------------------------------------- */
/* 1 if every element of x (n,) is finite, else 0 (one vectorized pass). */
int fnn_all_finite_f32(const float *x, int64_t n);
int fnn_all_finite_f64(const double *x, int64_t n);

/* Plain delta-rule update, one pass: w (n,) -= lr * dw (n,). */
int fnn_sgd_update_f32(float *w, const float *dw, int64_t n, float lr);
int fnn_sgd_update_f64(double *w, const double *dw, int64_t n, double lr);

/* torch.optim steps, each one fused pass over a parameter of n elements,
 * updating w and its state in place (all arrays (n,), C-contiguous, not
 * overlapping).  Hyper-parameters are checked by the Python layer; these
 * return FNN_EINVAL only for n < 0, step < 1, a NULL array that is needed,
 * or an impossible option.  n_threads <= 0 means 1; below ~32k elements per
 * thread fewer threads are used.  Results do not depend on n_threads. */

/* torch.optim.SGD: d = g + weight_decay w;
 *   momentum != 0: buf = first_step ? d : momentum buf + (1 - dampening) d,
 *                  d = nesterov ? d + momentum buf : buf;
 *   w -= lr d.
 * buf may be NULL when momentum == 0; nesterov needs momentum > 0 and
 * dampening == 0. */
int fnn_sgd_step_f32(float *w, float *buf, const float *g, int64_t n, float lr, float momentum,
                     float dampening, int nesterov, float weight_decay, int first_step,
                     int n_threads);
int fnn_sgd_step_f64(double *w, double *buf, const double *g, int64_t n, double lr,
                     double momentum, double dampening, int nesterov, double weight_decay,
                     int first_step, int n_threads);

/* torch.optim.Adam (decoupled == 0: g += weight_decay w) and AdamW
 * (decoupled == 1: w *= 1 - lr weight_decay first):
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
 *   amsgrad (vmax != NULL): vmax = max(vmax, v) and vmax replaces v below;
 *   w -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
 * step >= 1 counts this step.  m, v (and vmax) start at zero. */
int fnn_adam_step_f32(float *w, float *m, float *v, float *vmax, const float *g, int64_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay,
                      int decoupled, int64_t step, int n_threads);
int fnn_adam_step_f64(double *w, double *m, double *v, double *vmax, const double *g, int64_t n,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int decoupled, int64_t step, int n_threads);

/* scikit-learn's L2 penalty on one weight array: g (n,) += wd * w (n,), and
 * *sq = sum of w^2 in double (8 partial sums, element i in sum i % 8, added
 * pairwise ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))). */
int fnn_l2_grad_f32(double *sq, float *g, const float *w, int64_t n, float wd);
int fnn_l2_grad_f64(double *sq, double *g, const double *w, int64_t n, double wd);

/* torch.optim.RMSprop: g += weight_decay w; sq = alpha sq + (1 - alpha) g^2;
 *   centered (gavg != NULL needed): gavg = alpha gavg + (1 - alpha) g,
 *            avg = sqrt(max(sq - gavg^2, 0)) + eps;  else avg = sqrt(sq) + eps;
 *   momentum > 0 (buf needed): buf = momentum buf + g / avg, w -= lr buf;
 *   else w -= lr g / avg.
 * sq, buf, gavg start at zero. */
int fnn_rmsprop_step_f32(float *w, float *sq, float *buf, float *gavg, const float *g,
                         int64_t n, float lr, float alpha, float eps, float weight_decay,
                         float momentum, int centered, int n_threads);
int fnn_rmsprop_step_f64(double *w, double *sq, double *buf, double *gavg, const double *g,
                         int64_t n, double lr, double alpha, double eps, double weight_decay,
                         double momentum, int centered, int n_threads);

/* torch.optim.Adagrad: g += weight_decay w; clr = lr / (1 + (step - 1) lr_decay);
 *   sum += g^2;  w -= clr g / (sqrt(sum) + eps).
 * step >= 1 counts this step; sum starts at initial_accumulator_value. */
int fnn_adagrad_step_f32(float *w, float *sum, const float *g, int64_t n, float lr,
                         float lr_decay, float weight_decay, float eps, int64_t step,
                         int n_threads);
int fnn_adagrad_step_f64(double *w, double *sum, const double *g, int64_t n, double lr,
                         double lr_decay, double weight_decay, double eps, int64_t step,
                         int n_threads);

/* ---- dropout (dropout.c) ------------------------------------------------ */
/* Inverted dropout with a counter-based RNG: element i is kept iff
 * (splitmix64 output number offset + i for `seed`) >> 40 >= ceil(p 2^24),
 * i.e. iff u_i >= p with u_i uniform on [0, 1) from 24 random bits (the exact
 * formula is in dropout.c).  Masks depend only on (seed, offset + i): not on
 * the thread count, nor on the dtype.  p is double for both dtypes so that
 * float and double masks agree exactly; 0 <= p < 1, else FNN_EINVAL.
 * x, out (n,); mask (n,) uint8 or NULL: out = x * (keep * s) with
 * s = 1/(1-p) rounded to the dtype (x * s where kept, x * 0 elsewhere, as
 * torch), mask = keep.  p == 0: out = x, mask = 1.  out may alias x. */
int fnn_dropout_forward_f32(float *out, uint8_t *mask, const float *x, int64_t n, double p,
                            uint64_t seed, uint64_t offset, int n_threads);
int fnn_dropout_forward_f64(double *out, uint8_t *mask, const double *x, int64_t n, double p,
                            uint64_t seed, uint64_t offset, int n_threads);
/* dy, dx, mask (n,): dx = dy * (mask * s), s as in the forward.  dx may alias dy. */
int fnn_dropout_backward_f32(float *dx, const float *dy, const uint8_t *mask, int64_t n,
                             double p, int n_threads);
int fnn_dropout_backward_f64(double *dx, const double *dy, const uint8_t *mask, int64_t n,
                             double p, int n_threads);

/* ---- whole training step of a Dense-only network (mlp.c) ---------------- */
/* A stack of n_layers Dense layers, each a_l = act_l(h_{l-1} w_l + b_l) with
 * h_{-1} = x; every pointer array has n_layers entries.  Buffers are sized for
 * `batch` rows: a[l], z[l] (or NULL unless fnn_act_needs_z), dx[l] (batch, in[l])
 * (dx[first_trainable] may be NULL), gout (batch, out[L-1]).  gw[l], gb[l] receive
 * the gradients (NULL for a frozen layer / no bias); b[l] may be NULL. */
typedef struct {
    int64_t n_layers, first_trainable;
    int64_t *in, *out;
    int *act;
    void **w, **b, **gw, **gb, **a, **z, **dx;
    void *gout;
} fnn_mlp;

#define FNN_LOSS_CE_LABELS 0 /* cross-entropy, integer labels (batch,)          */
#define FNN_LOSS_CE_ROWS 1   /* cross-entropy, probability rows (batch, classes) */
#define FNN_LOSS_MSE 2
#define FNN_LOSS_BCE 3

/* Forward, loss (value in *loss) and backward of one batch in one call: x
 * (batch, in[0]); labels (batch,) for FNN_LOSS_CE_LABELS, else target
 * (batch, out[L-1]).  A non-finite loss skips the backward pass (gradients keep
 * their old values); a label out of range returns FNN_ELABEL after the forward
 * pass but before any gradient is written. */
int fnn_mlp_step_f32(double *loss, const fnn_mlp *net, const float *x, const int64_t *labels,
                     const float *target, int64_t batch, int loss_kind, int n_threads);
int fnn_mlp_step_f64(double *loss, const fnn_mlp *net, const double *x, const int64_t *labels,
                     const double *target, int64_t batch, int loss_kind, int n_threads);

/* ---- convolution and pooling (conv.c, pool.c) --------------------------- */
/* Shapes (NCHW, PyTorch's layout):
 *   x (n, c, h, w); w (oc, c, kh, kw); b (oc,) or NULL;
 *   out, z, dout (n, oc, oh, ow) with oh = (h + 2 ph - kh) / sh + 1,
 *   ow = (w + 2 pw - kw) / sw + 1 (zero padding, floor mode).
 * kh, kw, sh, sw >= 1; ph, pw >= 0; h + 2 ph >= kh and w + 2 pw >= kw.
 *
 * Workspace: `work` is a caller-owned scratch buffer of `work_bytes` bytes
 * (64-byte aligned preferably), reused across calls; the kernels never
 * allocate it.  fnn_conv2d_workspace_size gives the bytes that let both the
 * forward and the backward run on min(n_threads, n) threads; a smaller buffer
 * makes a kernel use fewer threads, and FNN_EINVAL if one thread's share does
 * not fit.  elem_size is sizeof(float) or sizeof(double). */
int fnn_conv2d_workspace_size(size_t *bytes, int64_t n, int64_t c, int64_t h, int64_t w,
                              int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int elem_size, int n_threads);

/* out = act(conv2d(x, w) + b); z = the pre-activation (or NULL).  Softmax is
 * taken over the channel axis (dim 1).  Per image one implicit GEMM
 * out_i (oc, oh ow) = W (oc, K) @ im2col(x_i) (K, oh ow) (+ b), K = c kh kw, with
 * im2col packed straight into micro-kernel panels, the bias in the accumulators
 * (or as a ones row), activation and z store while each tile is in L1. */
int fnn_conv2d_forward_f32(float *out, float *z, void *work, size_t work_bytes, const float *x,
                           const float *w, const float *b, int64_t n, int64_t c, int64_t h,
                           int64_t wd, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int act, int n_threads);
int fnn_conv2d_forward_f64(double *out, double *z, void *work, size_t work_bytes,
                           const double *x, const double *w, const double *b, int64_t n,
                           int64_t c, int64_t h, int64_t wd, int64_t oc, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t ph, int64_t pw, int act,
                           int n_threads);

/* Backward of fnn_conv2d_forward.  dout = dL/d(out); a = the forward's out;
 * z its pre-activation (NULL unless fnn_act_needs_z(act)).  With
 * delta = dout * act'(z) (per image, while hot):
 *   dw (oc, c, kh, kw) = sum_i delta_i @ im2col(x_i)^T  (+ beta_w dw; beta_w == 0
 *                        overwrites), summed in a fixed order for a fixed thread count;
 *   db (oc,) = sum of delta over images and pixels (NULL to skip);
 *   dx (n, c, h, w) = col2im(W^T delta_i) (NULL to skip, e.g. the first layer). */
int fnn_conv2d_backward_f32(float *dx, float *dw, float *db, void *work, size_t work_bytes,
                            const float *dout, const float *a, const float *z, const float *x,
                            const float *w, int64_t n, int64_t c, int64_t h, int64_t wd,
                            int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                            int64_t ph, int64_t pw, int act, float beta_w, int n_threads);
int fnn_conv2d_backward_f64(double *dx, double *dw, double *db, void *work, size_t work_bytes,
                            const double *dout, const double *a, const double *z,
                            const double *x, const double *w, int64_t n, int64_t c, int64_t h,
                            int64_t wd, int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                            int64_t sw, int64_t ph, int64_t pw, int act, double beta_w,
                            int n_threads);

/* Pooling: x (n, c, h, w) -> out (n, c, oh, ow), oh = (h + 2 ph - kh) / sh + 1;
 * ph <= kh / 2 and pw <= kw / 2 (as PyTorch).  Padded positions never win a
 * max and count as zeros in an average (count_include_pad: divisor kh kw). */
/* idx (n, c, oh, ow) or NULL: flat index y w + x in the input plane of the
 * first maximum of each window (a NaN wins, as in PyTorch). */
int fnn_maxpool2d_forward_f32(float *out, int64_t *idx, const float *x, int64_t n, int64_t c,
                              int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                              int64_t sw, int64_t ph, int64_t pw, int n_threads);
int fnn_maxpool2d_forward_f64(double *out, int64_t *idx, const double *x, int64_t n, int64_t c,
                              int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                              int64_t sw, int64_t ph, int64_t pw, int n_threads);
/* dx (n, c, h, w) = dout (n, c, oh, ow) scattered (added) at idx; an index
 * outside [0, h w) is skipped and makes the call return FNN_EINVAL. */
int fnn_maxpool2d_backward_f32(float *dx, const float *dout, const int64_t *idx, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                               int n_threads);
int fnn_maxpool2d_backward_f64(double *dx, const double *dout, const int64_t *idx, int64_t n,
                               int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                               int n_threads);
int fnn_avgpool2d_forward_f32(float *out, const float *x, int64_t n, int64_t c, int64_t h,
                              int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int n_threads);
int fnn_avgpool2d_forward_f64(double *out, const double *x, int64_t n, int64_t c, int64_t h,
                              int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int n_threads);
/* dx (n, c, h, w) from dout (n, c, oh, ow): each dout / (kh kw) added to its window. */
int fnn_avgpool2d_backward_f32(float *dx, const float *dout, int64_t n, int64_t c, int64_t h,
                               int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int n_threads);
int fnn_avgpool2d_backward_f64(double *dx, const double *dout, int64_t n, int64_t c, int64_t h,
                               int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int n_threads);
/* out (n, c) = mean of each plane of x (n, c, h, w). */
int fnn_global_avgpool_forward_f32(float *out, const float *x, int64_t n, int64_t c, int64_t h,
                                   int64_t w, int n_threads);
int fnn_global_avgpool_forward_f64(double *out, const double *x, int64_t n, int64_t c,
                                   int64_t h, int64_t w, int n_threads);
/* dx (n, c, h, w) = dout (n, c) / (h w) broadcast over each plane. */
int fnn_global_avgpool_backward_f32(float *dx, const float *dout, int64_t n, int64_t c,
                                    int64_t h, int64_t w, int n_threads);
int fnn_global_avgpool_backward_f64(double *dx, const double *dout, int64_t n, int64_t c,
                                    int64_t h, int64_t w, int n_threads);

/* ---- embeddings and pooling over a sequence (embed.c) -------------------- */
/* out (n, d) = w[idx[i], :] for idx (n,), w (v, d); an index outside [0, v) returns
 * FNN_EINDEX (its position in *bad, bad may be NULL) before anything is written. */
int fnn_embedding_forward_f32(float *out, int64_t *bad, const int64_t *idx, const float *w,
                              int64_t n, int64_t v, int64_t d, int n_threads);
int fnn_embedding_forward_f64(double *out, int64_t *bad, const int64_t *idx, const double *w,
                              int64_t n, int64_t v, int64_t d, int n_threads);
/* dw (v, d) = beta dw + scatter-add of dout (n, d) into the rows idx (n,); deterministic
 * (threads own column blocks, rows are added in order), bad indices as the forward. */
int fnn_embedding_backward_f32(float *dw, int64_t *bad, const int64_t *idx, const float *dout,
                               int64_t n, int64_t v, int64_t d, float beta, int n_threads);
int fnn_embedding_backward_f64(double *dw, int64_t *bad, const int64_t *idx,
                               const double *dout, int64_t n, int64_t v, int64_t d,
                               double beta, int n_threads);
/* out (n, d) = mean over l of x (n, l, d) (zeros for l = 0). */
int fnn_global_avgpool1d_forward_f32(float *out, const float *x, int64_t n, int64_t l,
                                     int64_t d, int n_threads);
int fnn_global_avgpool1d_forward_f64(double *out, const double *x, int64_t n, int64_t l,
                                     int64_t d, int n_threads);
/* dx (n, l, d) = dout (n, d) / l broadcast over l. */
int fnn_global_avgpool1d_backward_f32(float *dx, const float *dout, int64_t n, int64_t l,
                                      int64_t d, int n_threads);
int fnn_global_avgpool1d_backward_f64(double *dx, const double *dout, int64_t n, int64_t l,
                                      int64_t d, int n_threads);
/* ---- normalization (norm.c) -------------------------------------------- */
/* x, out (n, c, s); weight, bias (c,) or NULL; running_mean, running_var (c,)
 * (read in eval); mean, var (c,) (written in training: batch mean, biased variance).
 * out = (x - mean) / sqrt(var + eps) * weight + bias, with the batch statistics in
 * training (n*s >= 1), the running ones in eval.  out may alias x. */
int fnn_batchnorm_forward_f32(float *out, float *mean, float *var, const float *x,
                              const float *weight, const float *bias, const float *running_mean,
                              const float *running_var, int64_t n, int64_t c, int64_t s, double eps,
                              int training, int n_threads);
int fnn_batchnorm_forward_f64(double *out, double *mean, double *var, const double *x,
                              const double *weight, const double *bias, const double *running_mean,
                              const double *running_var, int64_t n, int64_t c, int64_t s,
                              double eps, int training, int n_threads);
/* dy, x, dx (n, c, s); mean, var, weight (c,) as the forward used them (weight NULL:
 * ones).  dweight = sum dy xhat, dbias = sum dy per channel; dx the closed form
 * through the batch statistics (training) or dy weight / sqrt(var + eps) (eval).
 * dx, dweight, dbias each NULL when not wanted; dx may alias dy. */
int fnn_batchnorm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy,
                               const float *x, const float *mean, const float *var,
                               const float *weight, int64_t n, int64_t c, int64_t s, double eps,
                               int training, int n_threads);
int fnn_batchnorm_backward_f64(double *dx, double *dweight, double *dbias, const double *dy,
                               const double *x, const double *mean, const double *var,
                               const double *weight, int64_t n, int64_t c, int64_t s, double eps,
                               int training, int n_threads);
/* running_mean, running_var, mean, var (c,): running = (1 - momentum) running +
 * momentum batch, the variance unbiased (var count / (count - 1)) as torch;
 * count >= 2, momentum in [0, 1]. */
int fnn_batchnorm_update_stats_f32(float *running_mean, float *running_var, const float *mean,
                                   const float *var, int64_t c, int64_t count, double momentum);
int fnn_batchnorm_update_stats_f64(double *running_mean, double *running_var, const double *mean,
                                   const double *var, int64_t c, int64_t count, double momentum);
/* x, out (rows, d); weight, bias (d,) or NULL; mean, rstd (rows,) written.
 * out = (x - mean) rstd weight + bias per row, rstd = 1/sqrt(biased var + eps). */
int fnn_layernorm_forward_f32(float *out, float *mean, float *rstd, const float *x,
                              const float *weight, const float *bias, int64_t rows, int64_t d,
                              double eps, int n_threads);
int fnn_layernorm_forward_f64(double *out, double *mean, double *rstd, const double *x,
                              const double *weight, const double *bias, int64_t rows, int64_t d,
                              double eps, int n_threads);
/* dy, x, dx (rows, d); mean, rstd (rows,); weight (d,) or NULL.  dx per row (closed
 * form), dweight = sum dy xhat, dbias = sum dy over rows; each NULL when not wanted. */
int fnn_layernorm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *weight, int64_t rows, int64_t d, int n_threads);
int fnn_layernorm_backward_f64(double *dx, double *dweight, double *dbias, const double *dy,
                               const double *x, const double *mean, const double *rstd,
                               const double *weight, int64_t rows, int64_t d, int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FASTNN_H */
