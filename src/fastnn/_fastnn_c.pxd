# The C API of csrc/fastnn.h as Cython sees it: every declaration the compiled module
# (_kernels.pyx) uses, in one place.  Grouped as the sections of _kernels.pyx.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t


cdef extern from "fastnn.h" nogil:
    # activation codes (fnn_act) and loss codes, read by _kernels.pyx and exposed to Python
    ctypedef enum fnn_act:
        FNN_ACT_IDENTITY
        FNN_ACT_SIGMOID
        FNN_ACT_TANH
        FNN_ACT_RELU
        FNN_ACT_LEAKY_RELU
        FNN_ACT_ELU
        FNN_ACT_GELU
        FNN_ACT_SOFTPLUS
        FNN_ACT_SILU
        FNN_ACT_SOFTMAX
        FNN_ACT_COUNT
    enum:
        FNN_LOSS_CE_LABELS
        FNN_LOSS_CE_ROWS
        FNN_LOSS_MSE
        FNN_LOSS_BCE


cdef extern from "fastnn.h" nogil:
    int FNN_OK, FNN_EINVAL, FNN_ENOMEM, FNN_EOVERFLOW, FNN_ELABEL
    ctypedef struct fnn_epilogue:
        const void *bias
        int act
        void *z
        int64_t ldz
    int fnn_init()
    int fnn_isa()
    const char *fnn_isa_name(int isa)
    int fnn_cpu_has_avx2()
    int fnn_isa_supported(int isa)
    int fnn_isa_request()
    int fnn_isa_emulated()
    int FNN_ISA_COUNT, FNN_FAM_COUNT, FNN_CPU_FEATURE_COUNT
    int FNN_ISA_REQ_NONE, FNN_ISA_REQ_OK, FNN_ISA_REQ_UNKNOWN, FNN_ISA_REQ_UNAVAILABLE
    const char *fnn_family_name(int family)
    int fnn_family_isa(int family)
    unsigned int fnn_cpu_features()
    const char *fnn_cpu_feature_name(int bit)
    void fnn_set_flush_denormal(int on)
    int fnn_get_flush_denormal()
    unsigned int fnn_mxcsr_get()
    void fnn_mxcsr_set(unsigned int v)
    int64_t fnn_window_out_size(int64_t n, int64_t k, int64_t s, int64_t p)
    int fnn_fma_peak(double *wall, double *cpu, int *width, double seconds, int n_threads)
    void fnn_gemm_blocking(int elem_size, int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc,
                           int64_t *nc)
    int fnn_openmp_enabled()
    int FNN_PREC_F32, FNN_PREC_BF16, FNN_FAM_GEMM_BF16
    void fnn_set_matmul_precision(int prec)
    int fnn_get_matmul_precision()
    int fnn_set_thread_matmul_precision(int prec)
    int fnn_matmul_precision()
    void fnn_f32_to_bf16(uint16_t *dst, const float *src, int64_t n)
    void fnn_gemm_bf16_blocking(int64_t *mr, int64_t *nr, int64_t *mc, int64_t *kc, int64_t *nc)
    int fnn_act_needs_z(int act)
    int fnn_gemm_f32(float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
                     int64_t lda, int64_t ldb, int64_t ldc, int trans_a, int trans_b,
                     float alpha, float beta, const fnn_epilogue *ep, int n_threads)
    int fnn_gemm_f64(double *c, const double *a, const double *b, int64_t m, int64_t n,
                     int64_t k, int64_t lda, int64_t ldb, int64_t ldc, int trans_a,
                     int trans_b, double alpha, double beta, const fnn_epilogue *ep,
                     int n_threads)
    int fnn_act_forward_f32(float *out, const float *x, int64_t rows, int64_t cols, int act)
    int fnn_act_forward_f64(double *out, const double *x, int64_t rows, int64_t cols, int act)
    int fnn_act_backward_f32(float *dz, float *dbias, const float *da, const float *a,
                             const float *z, int64_t rows, int64_t cols, int act)
    int fnn_act_backward_f64(double *dz, double *dbias, const double *da, const double *a,
                             const double *z, int64_t rows, int64_t cols, int act)
    int fnn_dense_forward_f32(float *a, float *z, const float *x, const float *w,
                              const float *b, int64_t batch, int64_t inp, int64_t out,
                              int act, int n_threads)
    int fnn_dense_forward_f64(double *a, double *z, const double *x, const double *w,
                              const double *b, int64_t batch, int64_t inp, int64_t out,
                              int act, int n_threads)
    int fnn_dense_backward_f32(float *dx, float *dw, float *db, float *delta, const float *da,
                               const float *a, const float *z, const float *x, const float *w,
                               int64_t batch, int64_t inp, int64_t out, int act, float beta_w,
                               int n_threads)
    int fnn_dense_backward_f64(double *dx, double *dw, double *db, double *delta,
                               const double *da, const double *a, const double *z,
                               const double *x, const double *w, int64_t batch, int64_t inp,
                               int64_t out, int act, double beta_w, int n_threads)
    int fnn_cross_entropy_f32(double *loss, float *grad, const float *logits,
                              const int64_t *labels, const float *target, int64_t batch,
                              int64_t classes)
    int fnn_cross_entropy_f64(double *loss, double *grad, const double *logits,
                              const int64_t *labels, const double *target, int64_t batch,
                              int64_t classes)
    int fnn_mse_f32(double *loss, float *grad, const float *pred, const float *target,
                    int64_t n)
    int fnn_mse_f64(double *loss, double *grad, const double *pred, const double *target,
                    int64_t n)
    int fnn_bce_logits_f32(double *loss, float *grad, const float *logits, const float *target,
                           int64_t n)
    int fnn_bce_logits_f64(double *loss, double *grad, const double *logits,
                           const double *target, int64_t n)
    int fnn_all_finite_f32(const float *x, int64_t n)
    int fnn_all_finite_f64(const double *x, int64_t n)
    int fnn_sgd_update_f32(float *w, const float *dw, int64_t n, float lr)
    int fnn_sgd_update_f64(double *w, const double *dw, int64_t n, double lr)
    int fnn_sgd_step_f32(float *w, float *buf, const float *g, int64_t n, float lr,
                         float momentum, float dampening, int nesterov, float weight_decay,
                         int first_step, int n_threads)
    int fnn_sgd_step_f64(double *w, double *buf, const double *g, int64_t n, double lr,
                         double momentum, double dampening, int nesterov, double weight_decay,
                         int first_step, int n_threads)
    int fnn_adam_step_f32(float *w, float *m, float *v, float *vmax, const float *g, int64_t n,
                          float lr, float beta1, float beta2, float eps, float weight_decay,
                          int decoupled, int64_t step, int n_threads)
    int fnn_adam_step_f64(double *w, double *m, double *v, double *vmax, const double *g,
                          int64_t n, double lr, double beta1, double beta2, double eps,
                          double weight_decay, int decoupled, int64_t step, int n_threads)
    int fnn_l2_grad_f32(double *sq, float *g, const float *w, int64_t n, float wd)
    int fnn_l2_grad_f64(double *sq, double *g, const double *w, int64_t n, double wd)
    int fnn_rmsprop_step_f32(float *w, float *sq, float *buf, float *gavg, const float *g,
                             int64_t n, float lr, float alpha, float eps, float weight_decay,
                             float momentum, int centered, int n_threads)
    int fnn_rmsprop_step_f64(double *w, double *sq, double *buf, double *gavg, const double *g,
                             int64_t n, double lr, double alpha, double eps,
                             double weight_decay, double momentum, int centered, int n_threads)
    int fnn_adagrad_step_f32(float *w, float *sum, const float *g, int64_t n, float lr,
                             float lr_decay, float weight_decay, float eps, int64_t step,
                             int n_threads)
    int fnn_adagrad_step_f64(double *w, double *sum, const double *g, int64_t n, double lr,
                             double lr_decay, double weight_decay, double eps, int64_t step,
                             int n_threads)
    int fnn_dropout_forward_f32(float *out, uint8_t *mask, const float *x, int64_t n, double p,
                                uint64_t seed, uint64_t offset, int n_threads)
    int fnn_dropout_forward_f64(double *out, uint8_t *mask, const double *x, int64_t n,
                                double p, uint64_t seed, uint64_t offset, int n_threads)
    int fnn_dropout_backward_f32(float *dx, const float *dy, const uint8_t *mask, int64_t n,
                                 double p, int n_threads)
    int fnn_dropout_backward_f64(double *dx, const double *dy, const uint8_t *mask, int64_t n,
                                 double p, int n_threads)
    int fnn_batchnorm_forward_f32(float *out, float *mean, float *var, const float *x,
                                  const float *weight, const float *bias, const float *running_mean,
                                  const float *running_var, int64_t n, int64_t c, int64_t s,
                                  double eps, int training, int n_threads)
    int fnn_batchnorm_forward_f64(double *out, double *mean, double *var, const double *x,
                                  const double *weight, const double *bias,
                                  const double *running_mean, const double *running_var, int64_t n,
                                  int64_t c, int64_t s, double eps, int training, int n_threads)
    int fnn_batchnorm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy,
                                   const float *x, const float *mean, const float *var,
                                   const float *weight, int64_t n, int64_t c, int64_t s, double eps,
                                   int training, int n_threads)
    int fnn_batchnorm_backward_f64(double *dx, double *dweight, double *dbias, const double *dy,
                                   const double *x, const double *mean, const double *var,
                                   const double *weight, int64_t n, int64_t c, int64_t s,
                                   double eps, int training, int n_threads)
    int fnn_batchnorm_update_stats_f32(float *running_mean, float *running_var, const float *mean,
                                       const float *var, int64_t c, int64_t count, double momentum)
    int fnn_batchnorm_update_stats_f64(double *running_mean, double *running_var,
                                       const double *mean, const double *var, int64_t c,
                                       int64_t count, double momentum)
    int fnn_layernorm_forward_f32(float *out, float *mean, float *rstd, const float *x,
                                  const float *weight, const float *bias, int64_t rows, int64_t d,
                                  double eps, int n_threads)
    int fnn_layernorm_forward_f64(double *out, double *mean, double *rstd, const double *x,
                                  const double *weight, const double *bias, int64_t rows, int64_t d,
                                  double eps, int n_threads)
    int fnn_layernorm_backward_f32(float *dx, float *dweight, float *dbias, const float *dy,
                                   const float *x, const float *mean, const float *rstd,
                                   const float *weight, int64_t rows, int64_t d, int n_threads)
    int fnn_layernorm_backward_f64(double *dx, double *dweight, double *dbias, const double *dy,
                                   const double *x, const double *mean, const double *rstd,
                                   const double *weight, int64_t rows, int64_t d, int n_threads)



cdef extern from "fastnn.h" nogil:
    int fnn_conv2d_workspace_size(size_t *nbytes, int64_t n, int64_t c, int64_t h, int64_t w,
                                  int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int elem_size, int n_threads)
    int fnn_conv2d_forward_f32(float *out, float *z, void *work, size_t work_bytes,
                               const float *x, const float *w, const float *b, int64_t n,
                               int64_t c, int64_t h, int64_t wd, int64_t oc, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                               int act, int n_threads)
    int fnn_conv2d_forward_f64(double *out, double *z, void *work, size_t work_bytes,
                               const double *x, const double *w, const double *b, int64_t n,
                               int64_t c, int64_t h, int64_t wd, int64_t oc, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                               int act, int n_threads)
    int fnn_conv2d_backward_f32(float *dx, float *dw, float *db, void *work, size_t work_bytes,
                                const float *dout, const float *a, const float *z,
                                const float *x, const float *w, int64_t n, int64_t c, int64_t h,
                                int64_t wd, int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                                int64_t sw, int64_t ph, int64_t pw, int act, float beta_w,
                                int n_threads)
    int fnn_conv2d_backward_f64(double *dx, double *dw, double *db, void *work,
                                size_t work_bytes, const double *dout, const double *a,
                                const double *z, const double *x, const double *w, int64_t n,
                                int64_t c, int64_t h, int64_t wd, int64_t oc, int64_t kh,
                                int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                int act, double beta_w, int n_threads)
    int fnn_maxpool2d_forward_f32(float *out, int64_t *idx, const float *x, int64_t n, int64_t c,
                                  int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                  int64_t sw, int64_t ph, int64_t pw, int n_threads)
    int fnn_maxpool2d_forward_f64(double *out, int64_t *idx, const double *x, int64_t n,
                                  int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int n_threads)
    int fnn_maxpool2d_backward_f32(float *dx, const float *dout, const int64_t *idx, int64_t n,
                                   int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                   int n_threads)
    int fnn_maxpool2d_backward_f64(double *dx, const double *dout, const int64_t *idx,
                                   int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh,
                                   int64_t ow, int n_threads)
    int fnn_avgpool2d_forward_f32(float *out, const float *x, int64_t n, int64_t c, int64_t h,
                                  int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int n_threads)
    int fnn_avgpool2d_forward_f64(double *out, const double *x, int64_t n, int64_t c, int64_t h,
                                  int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int n_threads)
    int fnn_avgpool2d_backward_f32(float *dx, const float *dout, int64_t n, int64_t c,
                                   int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t ph, int64_t pw, int n_threads)
    int fnn_avgpool2d_backward_f64(double *dx, const double *dout, int64_t n, int64_t c,
                                   int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t ph, int64_t pw, int n_threads)
    int fnn_global_avgpool_forward_f32(float *out, const float *x, int64_t n, int64_t c,
                                       int64_t h, int64_t w, int n_threads)
    int fnn_global_avgpool_forward_f64(double *out, const double *x, int64_t n, int64_t c,
                                       int64_t h, int64_t w, int n_threads)
    int fnn_global_avgpool_backward_f32(float *dx, const float *dout, int64_t n, int64_t c,
                                        int64_t h, int64_t w, int n_threads)
    int fnn_global_avgpool_backward_f64(double *dx, const double *dout, int64_t n, int64_t c,
                                        int64_t h, int64_t w, int n_threads)



cdef extern from "fastnn.h" nogil:
    ctypedef struct fnn_mlp:
        int64_t n_layers, first_trainable
        int64_t *in_ "in"
        int64_t *out
        int *act
        void **w
        void **b
        void **gw
        void **gb
        void **a
        void **z
        void **dx
        void *gout
    int fnn_mlp_step_f32(double *loss, const fnn_mlp *net, const float *x, const int64_t *labels,
                         const float *target, int64_t batch, int loss_kind, int n_threads)
    int fnn_mlp_step_f64(double *loss, const fnn_mlp *net, const double *x,
                         const int64_t *labels, const double *target, int64_t batch,
                         int loss_kind, int n_threads)


cdef extern from "fnn_fpenv_py.h" nogil:
    # the calling thread's MXCSR set for a kernel call and restored after it
    void fnn_fpenv_push()
    void fnn_fpenv_pop()


cdef extern from "fastnn.h" nogil:
    int FNN_EINDEX
    int fnn_embedding_forward_f32(float *out, int64_t *bad, const int64_t *idx, const float *w,
                                  int64_t n, int64_t v, int64_t d, int n_threads)
    int fnn_embedding_forward_f64(double *out, int64_t *bad, const int64_t *idx,
                                  const double *w, int64_t n, int64_t v, int64_t d,
                                  int n_threads)
    int fnn_embedding_backward_f32(float *dw, int64_t *bad, const int64_t *idx,
                                   const float *dout, int64_t n, int64_t v, int64_t d,
                                   float beta, int n_threads)
    int fnn_embedding_backward_f64(double *dw, int64_t *bad, const int64_t *idx,
                                   const double *dout, int64_t n, int64_t v, int64_t d,
                                   double beta, int n_threads)
    int fnn_global_avgpool1d_forward_f32(float *out, const float *x, int64_t n, int64_t l,
                                         int64_t d, int n_threads)
    int fnn_global_avgpool1d_forward_f64(double *out, const double *x, int64_t n, int64_t l,
                                         int64_t d, int n_threads)
    int fnn_global_avgpool1d_backward_f32(float *dx, const float *dout, int64_t n, int64_t l,
                                          int64_t d, int n_threads)
    int fnn_global_avgpool1d_backward_f64(double *dx, const double *dout, int64_t n,
                                          int64_t l, int64_t d, int n_threads)
