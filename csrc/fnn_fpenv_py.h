/* fnn_fpenv_py.h -- the Python module's wrapper of fnn_fpenv_enter/leave for
 * the calling thread (one pair around each kernel call in _kernels.pyx's
 * nogil blocks), kept as a thread-local save slot so the Cython code needs no
 * variable.  Nested pairs restore at the outermost pop. */
#ifndef FNN_FPENV_PY_H
#define FNN_FPENV_PY_H
#include "fastnn.h"

#if defined(_MSC_VER)
#define FNN_PY_TLS __declspec(thread)
#else
#define FNN_PY_TLS _Thread_local
#endif

static FNN_PY_TLS unsigned fnn_py_fe_saved;
static FNN_PY_TLS int fnn_py_fe_depth;

/* Set the process's subnormal mode on this thread; remember its MXCSR. */
static inline void fnn_fpenv_push(void)
{
    const unsigned saved = fnn_fpenv_enter();
    if (fnn_py_fe_depth++ == 0) fnn_py_fe_saved = saved;
}

/* Give this thread its MXCSR back (at the outermost pop). */
static inline void fnn_fpenv_pop(void)
{
    if (--fnn_py_fe_depth == 0) fnn_fpenv_leave(fnn_py_fe_saved);
}
#endif /* FNN_FPENV_PY_H */
