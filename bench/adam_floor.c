/*
 * bench/adam_floor.c -- how fast can one Adam step over n elements be here?
 *
 * Target 1 of the benchmark issue asks, on 71,146 elements, for 10x the
 * NumPy reference: about 0.24 ns per element on this project's machine.
 * This program times fastopt's own Adam kernel (from the real header, at
 * the best SIMD level the CPU has) against two loops that do less, all
 * three alternated call by call in one process, median of 2,000 calls:
 *
 *   fastopt   the kernel: p, g, m, v read; p, m, v written; one sqrt and
 *             one division an element
 *   no root   the same loads, stores and arithmetic without the sqrt and
 *             the division (so not Adam: a lower bound)
 *   traffic   the loads and stores alone, one add each
 *
 * If "no root" or even "traffic" is slower than the target, no correctly
 * rounded Adam kernel on this machine can meet it.  Not part of the
 * package or the test suite; a measurement to back BENCHMARKS.md.
 *
 * Build and run from the repository root:
 *   gcc -O3 -fno-math-errno -ffp-contract=off -fopenmp bench/adam_floor.c \
 *       -o /tmp/adam_floor -lm && OMP_NUM_THREADS=1 /tmp/adam_floor 71146
 */
#include "../fastopt/_ext/fastopt_kernels.h"

#include <stdio.h>
#include <time.h>

#if FO_X86
#define FLOOR_TARGET FO_TARGET_AVX512
#else
#define FLOOR_TARGET
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Less than Adam, over the same buffers.  Without traffic_only: fastopt's
 * Adam arithmetic with m / (sqrt(v) * dscale + eps) replaced by
 * m * (v * dscale + eps), everything but the divider's work.  With it:
 * Adam's memory traffic alone, 4 streams read and 3 written. */
FO_INLINE void less_than_adam(const fo_adam_args *a, ptrdiff_t n, const int traffic_only) {
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict M = a->m;
    float *restrict V = a->v;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (traffic_only) {
            const float g = G[i];
            P[i] += g;
            M[i] += g;
            V[i] += fabsf(g); /* keeps v >= 0 for the Adam calls */
        } else {
            const float p = P[i] * a->p_scale, d = a->gscale * G[i];
            const float m = M[i] + a->one_m_beta1 * (d - M[i]);
            const float v = a->beta2 * V[i] + a->one_m_beta2 * (d * d);
            M[i] = m;
            V[i] = v;
            P[i] = p + a->neg_step * (m * (v * a->dscale + a->eps));
        }
    }
}

static FLOOR_TARGET __attribute__((noinline)) void no_root(const fo_adam_args *a, ptrdiff_t n) {
    less_than_adam(a, n, 0);
}

static FLOOR_TARGET __attribute__((noinline)) void traffic(const fo_adam_args *a, ptrdiff_t n) {
    less_than_adam(a, n, 1);
}

static int by_value(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    const ptrdiff_t n = argc > 1 ? atol(argv[1]) : 71146;
    enum { CALLS = 2000, KINDS = 3 };
    if (n <= 0) {
        fprintf(stderr, "usage: %s [elements > 0]\n", argv[0]);
        return 2;
    }
    float *buf[4];
    for (int k = 0; k < 4; k++) {
        buf[k] = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
        if (!buf[k]) return 1;
        for (ptrdiff_t i = 0; i < n; i++)
            buf[k][i] = k == 1 ? (float)((i * 13) % 11 - 5) * 0.01f : 0.0f;
    }
    fo_adam_args a = {buf[0], buf[1], buf[2], buf[3], NULL,
                      1.0f, 1.0f, 0.0f, 0.1f, 0.999f, 0.001f, 1.0f, 1e-8f, -1e-3f, 0};
    const fo_kernel_fn adam = fo_tables[fo_best_simd()].adam;
    static double t[KINDS][CALLS];
    const char *names[KINDS] = {"fastopt", "no root", "traffic"};
    _mm_setcsr(_mm_getcsr() | FO_MXCSR_FTZ_DAZ);
    for (int c = 0; c < CALLS; c++)
        for (int j = 0; j < KINDS; j++) {
            const int k = (j + c) % KINDS; /* rotate who goes first */
            const double t0 = now();
            if (k == 0) adam(&a, 0, n);
            else if (k == 1) no_root(&a, n);
            else traffic(&a, n);
            t[k][c] = now() - t0;
        }
    printf("n = %ld, %s kernels, median of %d calls each, alternated\n", (long)n,
           fo_tables[fo_best_simd()].name, CALLS);
    for (int k = 0; k < KINDS; k++) {
        qsort(t[k], CALLS, sizeof(double), by_value);
        printf("  %-8s %8.2f us  %.3f ns/element\n", names[k], t[k][CALLS / 2] * 1e6,
               t[k][CALLS / 2] / n * 1e9);
    }
    return 0;
}
