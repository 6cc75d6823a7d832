/*
 * fastopt/_fastopt_kernels.h -- the element-wise optimizer update rules.
 *
 * Each rule's arithmetic is written exactly once, as an always-inline body
 * over the half-open range [lo, hi).  The body is stamped out three times
 * (AVX-512, AVX2, and the x86-64 SSE2 baseline) by FO_VARIANTS; the variant
 * is chosen once at import from what the CPU supports (fo_select_simd).  A
 * wheel built here therefore runs on any x86-64 and uses 512-bit vectors
 * where they exist.  On other architectures only the baseline is built.
 *
 * Flags that change which buffers are read or written (AMSGrad's max buffer,
 * the momentum buffer, RMSprop's centred average) are compile-time constants
 * of the body, so the compiler emits one straight loop per combination; a
 * conditional load or store would stop it vectorising.  Flags that only pick
 * between two values (weight decay on/off, Nesterov, eps inside the root)
 * are selects, which vectorise.
 *
 * Results are bit-identical across the three variants: the build uses
 * -ffp-contract=off (no FMA contraction in one variant and not another) and
 * sqrt and division are correctly rounded in every instruction set.
 *
 * A gradient can be scanned for nan/inf first (fo_nonfinite_dispatch), so
 * that a bad step is skipped whole instead of half-applied.
 *
 * fo_run() runs a body over n elements: single-threaded below
 * FO_PARALLEL_MIN elements, otherwise in one static OpenMP region whose
 * chunks are multiples of 16 floats (64 bytes); subnormal flushing (FTZ/DAZ)
 * is switched on around the work in every thread and restored afterwards.
 */
#ifndef FASTOPT_KERNELS_H
#define FASTOPT_KERNELS_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FO_X86 1
#include <xmmintrin.h>
#else
#define FO_X86 0
#endif

#define FO_INLINE static inline __attribute__((always_inline))
#define FO_NOT_FINITE(x) (!(fabsf(x) <= FLT_MAX)) /* true for nan and +-inf */

/* Below this many elements the kernels run on the calling thread: waking an
 * idle OpenMP team costs tens of microseconds, more than the whole update. */
#ifndef FO_PARALLEL_MIN
#define FO_PARALLEL_MIN 262144
#endif

typedef int (*fo_kernel_fn)(const void *args, ptrdiff_t lo, ptrdiff_t hi);

/* ------------------------------------------------------------------------ */
/* SGD, with momentum / Nesterov, in PyTorch's or Keras' form.
 *
 *   p <- p * p_scale                          (decoupled weight decay; 1 = off)
 *   d  = gscale * g  [+ wd * p]      (gscale: -1 to maximize, times a clip
 *                                     or loss-scale factor; L2 weight decay)
 *   no buffer:  p <- p + s * d
 *   buffer:     b <- first ? d : mu * b + c * d
 *               u  = nesterov ? mu * b + nd * d : b
 *               p <- p + s * u
 *
 * PyTorch: c = 1 - dampening, nd = 1, s = -lr.
 * Keras:   c = -lr (velocity holds lr * gradient), nd = -lr, s = 1, never first.
 */
typedef struct {
    float *p; const float *g; float *buf;
    float p_scale, gscale, wd, mu, c, nd, s;
    int has_wd, first, nesterov;
} fo_sgd_args;

FO_INLINE int fo_sgd_body(const fo_sgd_args *a, ptrdiff_t lo, ptrdiff_t hi,
                          const int has_buf) {
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict B = a->buf;
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd, mu = a->mu,
                c = a->c, nd = a->nd, s = a->s;
    const int has_wd = a->has_wd, first = a->first, nesterov = a->nesterov;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        if (has_buf) {
            const float b = first ? d : mu * B[i] + c * d;
            B[i] = b;
            const float u = nesterov ? mu * b + nd * d : b;
            P[i] = p + s * u;
        } else {
            P[i] = p + s * d;
        }
    }
    return 0;
}

FO_INLINE int fo_sgd_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_sgd_args *a = (const fo_sgd_args *)v;
    return a->buf ? fo_sgd_body(a, lo, hi, 1) : fo_sgd_body(a, lo, hi, 0);
}

/* ------------------------------------------------------------------------ */
/* Adagrad.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   s <- s + d * d
 *   den = eps_inside ? sqrt(s + eps) : sqrt(s) + eps
 *   p <- p + neg_clr * (d / den)
 *
 * PyTorch: eps outside the root, neg_clr = -lr / (1 + (step - 1) lr_decay).
 * Keras:   eps inside the root.
 */
typedef struct {
    float *p; const float *g; float *sum;
    float p_scale, gscale, wd, eps, neg_clr;
    int has_wd, eps_inside;
} fo_adagrad_args;

FO_INLINE int fo_adagrad_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_adagrad_args *a = (const fo_adagrad_args *)v;
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict S = a->sum;
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                eps = a->eps, neg_clr = a->neg_clr;
    const int has_wd = a->has_wd, eps_inside = a->eps_inside;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float s = S[i] + d * d;
        S[i] = s;
        const float den = eps_inside ? sqrtf(s + eps) : sqrtf(s) + eps;
        P[i] = p + neg_clr * (d / den);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* RMSprop, plain / centred / with momentum, in PyTorch's or Keras' form.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   v <- alpha * v + (1 - alpha) * d * d
 *   centred: a <- a + (1 - alpha) * (d - a);  w = v - a * a   else w = v
 *   den = eps_inside ? sqrt(w + eps) : sqrt(w) + eps
 *   momentum: b <- mu * b + c * (d / den);  p <- p + s * b
 *   else:     p <- p + s * (d / den)
 *
 * PyTorch: eps outside, c = 1, s = -lr.
 * Keras:   eps inside, c = lr, s = -1 with momentum (s = -lr without).
 */
typedef struct {
    float *p; const float *g; float *sq; float *buf; float *gavg;
    float p_scale, gscale, wd, alpha, one_m_alpha, eps, mu, c, s;
    int has_wd, eps_inside;
} fo_rmsprop_args;

FO_INLINE int fo_rmsprop_body(const fo_rmsprop_args *a, ptrdiff_t lo,
                              ptrdiff_t hi, const int has_buf,
                              const int centered) {
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict V = a->sq;
    float *restrict B = a->buf;
    float *restrict A = a->gavg;
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                alpha = a->alpha, one_m_alpha = a->one_m_alpha, eps = a->eps,
                mu = a->mu, c = a->c, s = a->s;
    const int has_wd = a->has_wd, eps_inside = a->eps_inside;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float v = alpha * V[i] + one_m_alpha * (d * d);
        V[i] = v;
        float w = v;
        if (centered) {
            const float ga = A[i] + one_m_alpha * (d - A[i]);
            A[i] = ga;
            w = v - ga * ga;
        }
        const float den = eps_inside ? sqrtf(w + eps) : sqrtf(w) + eps;
        const float step = d / den;
        if (has_buf) {
            const float b = mu * B[i] + c * step;
            B[i] = b;
            P[i] = p + s * b;
        } else {
            P[i] = p + s * step;
        }
    }
    return 0;
}

FO_INLINE int fo_rmsprop_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_rmsprop_args *a = (const fo_rmsprop_args *)v;
    if (a->buf)
        return a->gavg ? fo_rmsprop_body(a, lo, hi, 1, 1)
                       : fo_rmsprop_body(a, lo, hi, 1, 0);
    return a->gavg ? fo_rmsprop_body(a, lo, hi, 0, 1)
                   : fo_rmsprop_body(a, lo, hi, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Adam / AdamW / AMSGrad.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   m <- m + (1 - beta1) * (d - m)
 *   v <- beta2 * v + (1 - beta2) * d * d
 *   amsgrad: vmax <- max(vmax, v) (nan propagates);  w = vmax   else w = v
 *   p <- p + neg_step * (m / (sqrt(w) * dscale + eps))
 *
 * PyTorch: neg_step = -lr / bc1, dscale = 1 / sqrt(bc2)   (eps after bias
 *          correction), bc1 = 1 - beta1^t and bc2 = 1 - beta2^t in double.
 * Keras:   neg_step = -lr sqrt(bc2) / bc1, dscale = 1      (eps before it).
 */
typedef struct {
    float *p; const float *g; float *m; float *v; float *vmax;
    float p_scale, gscale, wd, one_m_beta1, beta2, one_m_beta2, dscale, eps,
          neg_step;
    int has_wd;
} fo_adam_args;

FO_INLINE int fo_adam_body(const fo_adam_args *a, ptrdiff_t lo, ptrdiff_t hi,
                           const int amsgrad) {
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict M = a->m;
    float *restrict V = a->v;
    float *restrict VM = a->vmax;
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                one_m_beta1 = a->one_m_beta1, beta2 = a->beta2,
                one_m_beta2 = a->one_m_beta2, dscale = a->dscale, eps = a->eps,
                neg_step = a->neg_step;
    const int has_wd = a->has_wd;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float m = M[i] + one_m_beta1 * (d - M[i]);
        const float v = beta2 * V[i] + one_m_beta2 * (d * d);
        M[i] = m;
        V[i] = v;
        float w = v;
        if (amsgrad) {
            const float old = VM[i];
            w = (old >= v || old != old) ? old : v;
            VM[i] = w;
        }
        P[i] = p + neg_step * (m / (sqrtf(w) * dscale + eps));
    }
    return 0;
}

FO_INLINE int fo_adam_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_adam_args *a = (const fo_adam_args *)v;
    return a->vmax ? fo_adam_body(a, lo, hi, 1) : fo_adam_body(a, lo, hi, 0);
}

/* ------------------------------------------------------------------------ */
/* Sum of squares in double, for gradient norms.  Sixteen independent lanes
 * vectorise without reassociating anything, so the result is the same for
 * every instruction set (and every run). */
typedef struct { const float *x; double result; } fo_sumsq_args;

FO_INLINE int fo_sumsq_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    fo_sumsq_args *a = (fo_sumsq_args *)v;
    const float *restrict X = a->x;
    double acc[16] = {0};
    ptrdiff_t i = lo;
    for (; i + 16 <= hi; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += (double)X[i + j] * (double)X[i + j];
    double total = 0.0;
    for (; i < hi; i++) total += (double)X[i] * (double)X[i];
    for (int j = 0; j < 16; j++) total += acc[j];
    a->result = total;
    return !(total <= DBL_MAX);
}

/* ------------------------------------------------------------------------ */
/* Is any element nan or +-inf?  A read-only pass (4 bytes an element): run
 * before an update that must be skipped, not half-applied, on a bad gradient. */
typedef struct { const float *x; } fo_nonfinite_args;

FO_INLINE int fo_nonfinite_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const float *restrict X = ((const fo_nonfinite_args *)v)->x;
    int bad = 0;
    for (ptrdiff_t i = lo; i < hi; i++) bad |= FO_NOT_FINITE(X[i]);
    return bad;
}

/* ------------------------------------------------------------------------ */
/* One function per (rule, instruction set).                                 */

#if FO_X86
#define FO_TARGET_AVX512 __attribute__((target("avx512f,prefer-vector-width=512")))
#define FO_TARGET_AVX2 __attribute__((target("avx2")))
#define FO_VARIANTS(rule)                                                    \
    static FO_TARGET_AVX512 int fo_##rule##_avx512(const void *a,           \
                                                   ptrdiff_t lo, ptrdiff_t hi) \
    { return fo_##rule##_dispatch(a, lo, hi); }                              \
    static FO_TARGET_AVX2 int fo_##rule##_avx2(const void *a, ptrdiff_t lo,  \
                                               ptrdiff_t hi)                 \
    { return fo_##rule##_dispatch(a, lo, hi); }                              \
    static int fo_##rule##_baseline(const void *a, ptrdiff_t lo, ptrdiff_t hi) \
    { return fo_##rule##_dispatch(a, lo, hi); }
#else
#define FO_VARIANTS(rule)                                                    \
    static int fo_##rule##_baseline(const void *a, ptrdiff_t lo, ptrdiff_t hi) \
    { return fo_##rule##_dispatch(a, lo, hi); }
#endif

FO_VARIANTS(sgd)
FO_VARIANTS(adagrad)
FO_VARIANTS(rmsprop)
FO_VARIANTS(adam)
FO_VARIANTS(sumsq)
FO_VARIANTS(nonfinite)

typedef struct {
    const char *name;
    fo_kernel_fn sgd, adagrad, rmsprop, adam, sumsq, nonfinite;
} fo_table;

static const fo_table fo_tables[] = {
    {"baseline", fo_sgd_baseline, fo_adagrad_baseline, fo_rmsprop_baseline,
     fo_adam_baseline, fo_sumsq_baseline, fo_nonfinite_baseline},
#if FO_X86
    {"avx2", fo_sgd_avx2, fo_adagrad_avx2, fo_rmsprop_avx2, fo_adam_avx2,
     fo_sumsq_avx2, fo_nonfinite_avx2},
    {"avx512f", fo_sgd_avx512, fo_adagrad_avx512, fo_rmsprop_avx512,
     fo_adam_avx512, fo_sumsq_avx512, fo_nonfinite_avx512},
#endif
};
#define FO_N_TABLES ((int)(sizeof(fo_tables) / sizeof(fo_tables[0])))

static const fo_table *fo_active = &fo_tables[0];

/* Index of the best table this CPU can run. */
static int fo_best_simd(void) {
#if FO_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* Switch to table `idx` (0 .. fo_best_simd()); returns 0, or -1 if the CPU
 * cannot run it. */
static int fo_select_simd(int idx) {
    if (idx < 0 || idx >= FO_N_TABLES || idx > fo_best_simd()) return -1;
    fo_active = &fo_tables[idx];
    return 0;
}

static const char *fo_simd_name(int idx) {
    return (idx >= 0 && idx < FO_N_TABLES) ? fo_tables[idx].name : "";
}

static int fo_n_simd(void) { return FO_N_TABLES; }

/* ------------------------------------------------------------------------ */
/* Subnormal flushing around a kernel: the moment buffers decay towards
 * subnormals, which are ~100x slower on x86.  FTZ|DAZ are restored after. */

static int fo_flush_subnormals = 1;

#if FO_X86
#define FO_MXCSR_FTZ_DAZ 0x8040u
static inline unsigned fo_ftz_enter(void) {
    unsigned old = _mm_getcsr();
    if (fo_flush_subnormals) _mm_setcsr(old | FO_MXCSR_FTZ_DAZ);
    return old;
}
static inline void fo_ftz_leave(unsigned old) { _mm_setcsr(old); }
#else
static inline unsigned fo_ftz_enter(void) { return 0; }
static inline void fo_ftz_leave(unsigned old) { (void)old; }
#endif

static int fo_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static int fo_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Run `fn` over [0, n).  Returns nonzero if any gradient element was not
 * finite (when the kernel was asked to check).  Called without the GIL. */
static int fo_run(fo_kernel_fn fn, const void *args, ptrdiff_t n) {
    int bad = 0;
#ifdef _OPENMP
    if (n >= FO_PARALLEL_MIN && omp_get_max_threads() > 1) {
#pragma omp parallel reduction(| : bad)
        {
            const ptrdiff_t nt = omp_get_num_threads();
            const ptrdiff_t t = omp_get_thread_num();
            /* chunks of whole 64-byte lines so no two threads share one */
            const ptrdiff_t chunk = ((n + nt - 1) / nt + 15) & ~(ptrdiff_t)15;
            const ptrdiff_t lo = t * chunk;
            const ptrdiff_t hi = lo + chunk < n ? lo + chunk : n;
            if (lo < hi) {
                const unsigned csr = fo_ftz_enter();
                bad |= fn(args, lo, hi);
                fo_ftz_leave(csr);
            }
        }
        return bad;
    }
#endif
    {
        const unsigned csr = fo_ftz_enter();
        bad = fn(args, 0, n);
        fo_ftz_leave(csr);
    }
    return bad;
}

#endif /* FASTOPT_KERNELS_H */
