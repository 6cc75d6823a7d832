/*
 * bench/lowp_overlap.c -- does low-precision Adam hide its arithmetic
 * behind its memory traffic, and how close can it get to its bytes?
 *
 * For each state format of adam_ (float32, bfloat16, 8-bit block-wise;
 * float32 gradient, no copy) this program times:
 *
 *   in cache  fastopt's kernel (the real header, the best SIMD level) on
 *             65,536 elements, one thread: its arithmetic, minimum of
 *             2,000 calls
 *   traffic   a loop with the kernel's loads and stores over n elements
 *             and one add each: its memory time, the floor of any kernel
 *             that reads and writes these buffers
 *   at n      the kernel over n elements (median of the rounds)
 *
 * and prints beside "at n" the larger of the first two (perfect overlap)
 * and their sum (none), the in-cache time divided by the threads, and
 * "traffic" and "at n" as fractions of the float32 step at n: issue 21
 * asks 0.74 (1.35x) of bfloat16 state and 0.625 (1.6x) of 8-bit state.
 * The n-element calls are alternated round by round and run through
 * fo_run, on the threads fastopt would use and split as it splits them.
 * Buffers are advised into huge pages, as NumPy allocates large arrays on
 * Linux, and placed as fastopt places its own (see zeros()).  Not part of
 * the package (tests/test_build.py checks that it builds and runs); the
 * measurement behind
 * docs/low_precision.md ("A step costs about the sum of its arithmetic and
 * its memory time", "The floor").
 *
 * Build and run from the repository root:
 *   gcc -O3 -fno-math-errno -ffp-contract=off -fopenmp bench/lowp_overlap.c \
 *       -o /tmp/lowp_overlap -lm && /tmp/lowp_overlap 16777216
 * Optional arguments after n: the kernels' software prefetch, 0 or 1
 * (fo_prefetch; without it, this CPU's default); the thread count (1);
 * the traffic loop's prefetch of all four buffers, 0 or 1 (0).
 */
#include "../fastopt/_ext/fastopt_kernels.h"
#include "timing.h"

#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
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

/* The kernel's loads and stores over [lo, hi), one add each (v's stays >= 0),
 * in blocks of FO_BLOCK elements; with traffic_prefetch on, each block first
 * asks for the lines FO_PREFETCH_AHEAD elements on in all four buffers (the
 * kernels ask only for the float32 ones): run it both ways, and the faster
 * is the fastest way we have to move these bytes.  The bounds are locals:
 * a store through a byte pointer may alias the struct, and reloading a->n
 * each time kept the 8-bit loop scalar. */
static int traffic_prefetch = 0;
#define AHEAD_LINES(X, SIZE, B)                                                    \
    for (int j = 0; j < FO_BLOCK * (SIZE); j += 64)                                \
        __builtin_prefetch((const char *)(X) + ((B) + FO_PREFETCH_AHEAD) * (SIZE) + j, 0, 3)
#define TRAFFIC_LOOP(MT, SIZE, BODY)                                               \
    do {                                                                           \
        MT *restrict M = a->m, *restrict V = a->v;                                 \
        for (ptrdiff_t b = lo; b < hi; b += FO_BLOCK) {                            \
            const ptrdiff_t e = hi - b < FO_BLOCK ? hi : b + FO_BLOCK;             \
            if (pf && b + FO_PREFETCH_AHEAD + FO_BLOCK <= hi) {                    \
                AHEAD_LINES(P, 4, b);                                              \
                AHEAD_LINES(G, 4, b);                                              \
                AHEAD_LINES(M, SIZE, b);                                           \
                AHEAD_LINES(V, SIZE, b);                                           \
            }                                                                      \
            for (ptrdiff_t i = b; i < e; i++) BODY;                                \
        }                                                                          \
    } while (0)
#define TRAFFIC(SUFFIX, TARGET)                                                    \
    static TARGET __attribute__((noinline)) void traffic_##SUFFIX(                 \
        const fo_adam_args *a, int f, ptrdiff_t lo, ptrdiff_t hi) {                \
        float *restrict P = a->p;                                                  \
        const float *restrict G = a->g;                                            \
        const int pf = traffic_prefetch;                                           \
        if (f == 0)                                                                \
            TRAFFIC_LOOP(float, 4, (P[i] += G[i], M[i] += G[i], V[i] += fabsf(G[i]))); \
        else if (f == 1)                                                           \
            TRAFFIC_LOOP(uint16_t, 2, (P[i] += G[i], M[i] += 1, V[i] += 3));       \
        else                                                                       \
            TRAFFIC_LOOP(uint8_t, 1, (P[i] += G[i], M[i] += 1, V[i] += 3));        \
    }
#if FO_X86
TRAFFIC(avx512, FO_TARGET_AVX512)
TRAFFIC(avx2, FO_TARGET_AVX2)
#endif
TRAFFIC(baseline, )

static fo_kernel_fn adam;
static void (*traffic)(const fo_adam_args *, int, ptrdiff_t, ptrdiff_t) = traffic_baseline;

typedef struct {
    fo_adam_args a;
    int f;
} traffic_args;

static int traffic_range(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const traffic_args *t = v;
    traffic(&t->a, t->f, lo, hi);
    return 0;
}

/* Seconds for the kernel (or the traffic loop) over a's n elements, on the
 * threads fastopt would use and split as it splits them (fo_run). */
static double timed(int is_traffic, const fo_adam_args *a, int f) {
    const traffic_args t = {*a, f};
    const double t0 = now();
    if (is_traffic) fo_run(traffic_range, &t, a->n);
    else fo_run(adam, a, a->n);
    return now() - t0;
}

int main(int argc, char **argv) {
    const ptrdiff_t n = argc > 1 ? atol(argv[1]) : 16777216;
    const int threads = argc > 3 ? atoi(argv[3]) : 1;
    traffic_prefetch = argc > 4 ? atoi(argv[4]) != 0 : 0;
    if (n < SMALL || threads < 1) {
        fprintf(stderr, "usage: %s [elements >= %d] [prefetch 0/1] [threads] [traffic prefetch"
                " 0/1]\n", argv[0], SMALL);
        return 2;
    }
    const int isa = fo_best_simd();
    adam = fo_tables[isa].adam;
#if FO_X86
    if (isa == FO_ISA_AVX512) traffic = traffic_avx512;
    if (isa == FO_ISA_AVX2) traffic = traffic_avx2;
#endif
    fo_prefetch = fo_prefetch_default(); /* as at import, without FASTOPT_PREFETCH */
    if (argc > 2) fo_prefetch = atoi(argv[2]) != 0;
    _mm_setcsr(_mm_getcsr() | FO_MXCSR_FTZ_DAZ);
#ifdef _OPENMP
    omp_set_num_threads(threads);
    const int used = n >= FO_PARALLEL_MIN ? omp_get_max_threads() : 1; /* as fo_run */
#else
    const int used = 1;
#endif
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
        timed(0, &big[f], f); /* first touch */
        timed(1, &tr[f], f);
    }
    for (int r = 0; r < ROUNDS; r++)
        for (int j = 0; j < 2 * FORMATS; j++) {
            const int k = (j + r) % (2 * FORMATS), f = k / 2; /* rotate who goes first */
            (k % 2 ? mem : at_n)[f][r] = timed(k % 2, k % 2 ? &tr[f] : &big[f], f);
        }
    printf("n = %ld, %d thread(s), %s kernels, prefetch %s (traffic loop: %s); ns per"
           " element (in cache: one thread, min of %d calls on %d elements; the rest: median"
           " of %d rounds); the last two columns as a fraction of the float32 step at n\n",
           (long)n, used, fo_tables[isa].name, fo_prefetch ? "on" : "off",
           traffic_prefetch ? "on" : "off", CALLS, SMALL, ROUNDS);
    printf("  %-9s %9s %9s %9s %9s %9s %9s %9s\n", "state", "in cache", "traffic", "at n",
           "max", "sum", "traffic/", "at n/");
    const double f32 = median(at_n[0], ROUNDS) / n * 1e9;
    for (int f = 0; f < FORMATS; f++) {
        const double c = cache[f] / SMALL * 1e9, m = median(mem[f], ROUNDS) / n * 1e9;
        const double at = median(at_n[f], ROUNDS) / n * 1e9, share = c / used;
        printf("  %-9s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", format_names[f], c, m, at,
               share > m ? share : m, share + m, m / f32, at / f32);
    }
    return 0;
}
