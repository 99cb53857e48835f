/*
 * gemm.c -- the GEMM engine: per-thread packing buffers and the blocked
 * driver (gemm_impl.h) instantiated for float and double.  All ISA-specific
 * code lives in the micro-kernels (gemm_kernel_*.c), registered per ISA level
 * (isa_*.c) and chosen in cpu.c.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdlib.h>
#include <string.h>

#include "fnn_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(_WIN32)
#include <pthread.h>
#define FNN_HAVE_PTHREAD_KEY 1
#endif

/* Below this many multiply-adds per thread a GEMM does not use another thread. */
#define FNN_GEMM_MIN_WORK (1 << 18)

static FNN_TLS void *tls_buf[FNN_BUF_COUNT];
static FNN_TLS size_t tls_cap[FNN_BUF_COUNT];

static void aligned_free(void *p)
{
#if defined(_MSC_VER)
    _aligned_free(p);
#else
    free(p);
#endif
}

#ifdef FNN_HAVE_PTHREAD_KEY
/* A key whose destructor frees the exiting thread's buffers: without it every
 * short-lived thread (a thread-per-request server, a ThreadPoolExecutor) that ran
 * a GEMM would leak its packing buffers.  Its value only marks "has buffers". */
static pthread_key_t tls_key;
static pthread_once_t tls_key_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;

static void tls_key_destroy(void *unused)
{
    (void)unused;
    fnn_thread_buffers_free();
}

static void tls_key_make(void) { tls_key_ok = pthread_key_create(&tls_key, tls_key_destroy) == 0; }
#endif

void *fnn_thread_buffer(int slot, size_t bytes)
{
    if (bytes <= tls_cap[slot] && tls_buf[slot]) return tls_buf[slot];
#ifdef FNN_HAVE_PTHREAD_KEY
    pthread_once(&tls_key_once, tls_key_make);
    if (tls_key_ok) pthread_setspecific(tls_key, (void *)1); /* run the destructor at exit */
#endif
    aligned_free(tls_buf[slot]);
    tls_buf[slot] = NULL;
    tls_cap[slot] = 0;
    if (bytes > SIZE_MAX - 2 * 64) return NULL;
    /* round up to whole cache lines, plus one line of slack for prefetches */
    size_t sz = ((bytes + 63) / 64) * 64 + 64;
    void *p;
#if defined(_MSC_VER)
    p = _aligned_malloc(sz, 64);
#else
    if (posix_memalign(&p, 64, sz) != 0) p = NULL;
#endif
    if (p) {
        tls_buf[slot] = p;
        tls_cap[slot] = sz;
    }
    return p;
}

void fnn_thread_buffers_free(void)
{
    for (int s = 0; s < FNN_BUF_COUNT; s++) {
        aligned_free(tls_buf[s]);
        tls_buf[s] = NULL;
        tls_cap[s] = 0;
    }
}

#define FNN_TEMPLATE "gemm_impl.h"
#include "fnn_template.h"
