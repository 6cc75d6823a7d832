/*
 * bench/lowp_overlap.c -- does low-precision Adam hide its arithmetic
 * behind its memory traffic?
 *
 * For each state format of adam_ (float32, bfloat16, 8-bit block-wise;
 * float32 gradient, no copy) this program times, on one thread:
 *
 *   in cache  fastopt's kernel (the real header, the best SIMD level) on
 *             65,536 elements: its arithmetic, minimum of 2,000 calls
 *   traffic   a loop with the kernel's loads and stores over n elements
 *             and one add each: its memory time
 *   at n      the kernel over n elements (median of the rounds)
 *
 * and prints beside "at n" the larger of the first two (perfect overlap)
 * and their sum (none).  The n-element calls are alternated round by
 * round.  Buffers are advised into huge pages, as NumPy allocates large
 * arrays on Linux, and placed as fastopt places its own (see zeros()).
 * Not part of the package or the test suite; the measurement behind
 * docs/low_precision.md ("A step costs about the sum of its arithmetic and
 * its memory time").
 *
 * Build and run from the repository root:
 *   gcc -O3 -fno-math-errno -ffp-contract=off -fopenmp bench/lowp_overlap.c \
 *       -o /tmp/lowp_overlap -lm && /tmp/lowp_overlap 16777216
 * A second argument, 0 or 1, sets the software prefetch (fo_prefetch);
 * without it, this CPU's default.
 */
#include "../fastopt/_ext/fastopt_kernels.h"
#include "timing.h"

#include <stdio.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

enum { FORMATS = 3, SMALL = 65536, CALLS = 2000, ROUNDS = 11 };
static const char *format_names[FORMATS] = {"float32", "bfloat16", "8-bit"};
static const int state_formats[FORMATS] = {FO_F32, FO_BF16, FO_Q8};
static const size_t state_sizes[FORMATS] = {4, 2, 1};

/* Zeroed memory placed as fastopt._placement places the buffers fastopt
 * allocates: the k-th buffer starts (k mod 8) x 64 KiB past a 2 MiB boundary,
 * so that buffers allocated one after another do not share DRAM banks. */
static void *zeros(size_t bytes) {
    static unsigned color = 0;
    const size_t huge = (size_t)1 << 21, skip = (size_t)(color++ % 8) * 65536;
    const size_t rounded = (bytes + skip + huge - 1) / huge * huge;
    char *x = aligned_alloc(huge, rounded);
    if (!x) exit(1);
#ifdef MADV_HUGEPAGE
    madvise(x, rounded, MADV_HUGEPAGE);
#endif
    memset(x, 0, rounded);
    return x + skip;
}

/* Adam's arguments over n fresh elements of state format f (PyTorch's form,
 * beta1 0.9, beta2 0.999, lr 1e-3, step 1 bias corrections left out). */
static fo_adam_args make_args(int f, ptrdiff_t n) {
    fo_adam_args a = {.p_scale = 1.0f, .gscale = 1.0f, .m_c = 0.1f, .beta2 = 0.999f,
                      .one_m_beta2 = 0.001f, .dscale = 1.0f, .eps = 1e-8f,
                      .neg_step = -1e-3f, .gfmt = FO_F32, .sfmt = state_formats[f],
                      .cfmt = FO_NONE, .n = n};
    float *g = zeros((size_t)n * 4);
    for (ptrdiff_t i = 0; i < n; i++) g[i] = (float)((i * 13) % 11 - 5) * 0.01f;
    a.p = zeros((size_t)n * 4);
    a.g = g;
    a.m = zeros((size_t)n * state_sizes[f]);
    a.v = zeros((size_t)n * state_sizes[f]);
    a.scales = zeros(2 * (size_t)((n + FO_Q8_BLOCK - 1) / FO_Q8_BLOCK) * 4);
    return a;
}

/* The kernel's loads and stores over [0, n), one add each (v's stays >= 0).
 * n is a local: a store through a byte pointer may alias the struct, and
 * reloading a->n each time kept the 8-bit loop scalar. */
#define TRAFFIC(SUFFIX, TARGET)                                                    \
    static TARGET __attribute__((noinline)) void traffic_##SUFFIX(const fo_adam_args *a, \
                                                                   int f) {        \
        float *restrict P = a->p;                                                  \
        const float *restrict G = a->g;                                            \
        const ptrdiff_t n = a->n;                                                  \
        if (f == 0) {                                                              \
            float *restrict M = a->m, *restrict V = a->v;                          \
            for (ptrdiff_t i = 0; i < n; i++)                                      \
                P[i] += G[i], M[i] += G[i], V[i] += fabsf(G[i]);                   \
        } else if (f == 1) {                                                       \
            uint16_t *restrict M = a->m, *restrict V = a->v;                       \
            for (ptrdiff_t i = 0; i < n; i++) P[i] += G[i], M[i] += 1, V[i] += 3;  \
        } else {                                                                   \
            uint8_t *restrict M = a->m, *restrict V = a->v;                        \
            for (ptrdiff_t i = 0; i < n; i++) P[i] += G[i], M[i] += 1, V[i] += 3;  \
        }                                                                          \
    }
#if FO_X86
TRAFFIC(avx512, FO_TARGET_AVX512)
TRAFFIC(avx2, FO_TARGET_AVX2)
#endif
TRAFFIC(baseline, )

int main(int argc, char **argv) {
    const ptrdiff_t n = argc > 1 ? atol(argv[1]) : 16777216;
    if (n < SMALL) {
        fprintf(stderr, "usage: %s [elements >= %d] [prefetch 0/1]\n", argv[0], SMALL);
        return 2;
    }
    const int isa = fo_best_simd();
    const fo_kernel_fn adam = fo_tables[isa].adam;
    void (*traffic)(const fo_adam_args *, int) = traffic_baseline;
#if FO_X86
    if (isa == FO_ISA_AVX512) traffic = traffic_avx512;
    if (isa == FO_ISA_AVX2) traffic = traffic_avx2;
#endif
    fo_prefetch = fo_prefetch_default(); /* as at import, without FASTOPT_PREFETCH */
    if (argc > 2) fo_prefetch = atoi(argv[2]) != 0;
    _mm_setcsr(_mm_getcsr() | FO_MXCSR_FTZ_DAZ);
    fo_adam_args small[FORMATS], big[FORMATS], tr[FORMATS];
    double cache[FORMATS], at_n[FORMATS][ROUNDS], mem[FORMATS][ROUNDS];
    for (int f = 0; f < FORMATS; f++) {
        small[f] = make_args(f, SMALL);
        big[f] = make_args(f, n);
        tr[f] = make_args(f, n);
        cache[f] = 1e30;
        for (int c = 0; c < CALLS; c++) {
            const double t0 = now();
            adam(&small[f], 0, SMALL);
            const double t = now() - t0;
            cache[f] = t < cache[f] ? t : cache[f];
        }
        adam(&big[f], 0, n); /* first touch */
        traffic(&tr[f], f);
    }
    for (int r = 0; r < ROUNDS; r++)
        for (int j = 0; j < 2 * FORMATS; j++) {
            const int k = (j + r) % (2 * FORMATS), f = k / 2; /* rotate who goes first */
            const double t0 = now();
            if (k % 2) traffic(&tr[f], f);
            else adam(&big[f], 0, n);
            (k % 2 ? mem : at_n)[f][r] = now() - t0;
        }
    printf("n = %ld, one thread, %s kernels, prefetch %s; ns per element (in cache: min of"
           " %d calls on %d elements; the rest: median of %d rounds)\n",
           (long)n, fo_tables[isa].name, fo_prefetch ? "on" : "off", CALLS, SMALL, ROUNDS);
    printf("  %-9s %9s %9s %9s %9s %9s\n", "state", "in cache", "traffic", "at n", "max",
           "sum");
    for (int f = 0; f < FORMATS; f++) {
        const double c = cache[f] / SMALL * 1e9, m = median(mem[f], ROUNDS) / n * 1e9;
        printf("  %-9s %9.3f %9.3f %9.3f %9.3f %9.3f\n", format_names[f], c, m,
               median(at_n[f], ROUNDS) / n * 1e9, c > m ? c : m, c + m);
    }
    return 0;
}
