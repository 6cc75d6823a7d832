/*
 * bench/adam_floor.c -- how fast can one Adam step over n elements be here?
 *
 * Target 1 of the benchmark issue asks, on 71,146 elements, for 10x the
 * NumPy reference: about 0.24 ns per element on this project's machine.
 * This program times fastopt's own Adam kernel (from the real header, at
 * the best SIMD level the CPU has) against three loops that do less, all
 * four alternated call by call in one process, median of 2,000 calls:
 *
 *   fastopt   the kernel: p, g, m, v read; p, m, v written; one sqrt and
 *             one division an element
 *   no root   the same loads, stores and arithmetic without the sqrt and
 *             the division (so not Adam: a lower bound)
 *   traffic   the loads and stores alone, one add each
 *   root only the parameter update alone, p += s * m / (sqrt(v) * c + eps):
 *             the sqrt and the division every correctly rounded Adam makes
 *             per element (p, m, v read, p written), and nothing else
 *
 * If any of the three is slower than the target, no correctly rounded
 * Adam kernel on this machine can meet it: "no root" and "traffic" bound
 * it where memory limits, "root only" where the divider does (on AVX2
 * cores without a wide divider, such as AMD's Zen 3).  Not part of the
 * package or the test suite; a measurement to back BENCHMARKS.md.
 *
 * Build and run from the repository root:
 *   gcc -O3 -fno-math-errno -ffp-contract=off -fopenmp bench/adam_floor.c \
 *       -o /tmp/adam_floor -lm && OMP_NUM_THREADS=1 /tmp/adam_floor 71146
 */
#include "../fastopt/_ext/fastopt_kernels.h"
#include "timing.h"

#include <stdio.h>

/* Less than Adam, over the same buffers.  kind 0: fastopt's Adam
 * arithmetic with m / (sqrt(v) * dscale + eps) replaced by
 * m * (v * dscale + eps), everything but the divider's work.  kind 1:
 * Adam's memory traffic alone, 4 streams read and 3 written.  kind 2: the
 * divider's work alone, the parameter update from the stored moments. */
FO_INLINE void less_than_adam(const fo_adam_args *a, ptrdiff_t n, const int kind) {
    float *restrict P = a->p;
    const float *restrict G = a->g;
    float *restrict M = a->m;
    float *restrict V = a->v;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (kind == 2) {
            P[i] += a->neg_step * (M[i] / (sqrtf(V[i]) * a->dscale + a->eps));
        } else if (kind == 1) {
            const float g = G[i];
            P[i] += g;
            M[i] += g;
            V[i] += fabsf(g); /* keeps v >= 0 for the Adam calls */
        } else {
            const float p = P[i] * a->p_scale, d = a->gscale * G[i];
            const float m = M[i] + a->m_c * (d - M[i]);
            const float v = a->beta2 * V[i] + a->one_m_beta2 * (d * d);
            M[i] = m;
            V[i] = v;
            P[i] = p + a->neg_step * (m * (v * a->dscale + a->eps));
        }
    }
}

typedef void (*floor_fn)(const fo_adam_args *a, ptrdiff_t n);

/* The three loops compiled for one SIMD level, as the kernels are. */
#define FLOOR_LOOPS(SUFFIX, TARGET)                                                \
    static TARGET __attribute__((noinline)) void floor0_##SUFFIX(const fo_adam_args *a, \
                                                                  ptrdiff_t n) {   \
        less_than_adam(a, n, 0);                                                   \
    }                                                                              \
    static TARGET __attribute__((noinline)) void floor1_##SUFFIX(const fo_adam_args *a, \
                                                                  ptrdiff_t n) {   \
        less_than_adam(a, n, 1);                                                   \
    }                                                                              \
    static TARGET __attribute__((noinline)) void floor2_##SUFFIX(const fo_adam_args *a, \
                                                                  ptrdiff_t n) {   \
        less_than_adam(a, n, 2);                                                   \
    }

#if FO_X86
FLOOR_LOOPS(avx512, FO_TARGET_AVX512)
FLOOR_LOOPS(avx2, FO_TARGET_AVX2)
#endif
FLOOR_LOOPS(baseline, )

/* loops[k - 1] at the SIMD level the kernels run at (fo_best_simd). */
static void floor_loops(floor_fn loops[3]) {
    const int isa = fo_best_simd();
    floor_fn chosen[3] = {floor0_baseline, floor1_baseline, floor2_baseline};
#if FO_X86
    if (isa == FO_ISA_AVX512) {
        chosen[0] = floor0_avx512, chosen[1] = floor1_avx512, chosen[2] = floor2_avx512;
    } else if (isa == FO_ISA_AVX2) {
        chosen[0] = floor0_avx2, chosen[1] = floor1_avx2, chosen[2] = floor2_avx2;
    }
#endif
    for (int k = 0; k < 3; k++) loops[k] = chosen[k];
}

int main(int argc, char **argv) {
    const ptrdiff_t n = argc > 1 ? atol(argv[1]) : 71146;
    enum { CALLS = 2000, KINDS = 4 };
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
    /* Adam, PyTorch's form at beta1 0.9 (m + 0.1 (d - m)), float32 buffers */
    fo_adam_args a = {.p = buf[0], .g = buf[1], .m = buf[2], .v = buf[3], .p_scale = 1.0f,
                      .gscale = 1.0f, .m_c = 0.1f, .beta2 = 0.999f, .one_m_beta2 = 0.001f,
                      .dscale = 1.0f, .eps = 1e-8f, .neg_step = -1e-3f, .gfmt = FO_F32,
                      .sfmt = FO_F32, .cfmt = FO_NONE, .n = n};
    const fo_kernel_fn adam = fo_tables[fo_best_simd()].adam;
    floor_fn loops[3];
    floor_loops(loops);
    static double t[KINDS][CALLS];
    const char *names[KINDS] = {"fastopt", "no root", "traffic", "root only"};
    _mm_setcsr(_mm_getcsr() | FO_MXCSR_FTZ_DAZ);
    for (int c = 0; c < CALLS; c++)
        for (int j = 0; j < KINDS; j++) {
            const int k = (j + c) % KINDS; /* rotate who goes first */
            const double t0 = now();
            if (k == 0) adam(&a, 0, n);
            else loops[k - 1](&a, n);
            t[k][c] = now() - t0;
        }
    printf("n = %ld, %s kernels, median of %d calls each, alternated\n", (long)n,
           fo_tables[fo_best_simd()].name, CALLS);
    for (int k = 0; k < KINDS; k++) {
        const double mid = median(t[k], CALLS);
        printf("  %-9s %8.2f us  %.3f ns/element\n", names[k], mid * 1e6, mid / n * 1e9);
    }
    return 0;
}
