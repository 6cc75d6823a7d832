/*
 * fastopt/_ext/fastopt_kernels.h -- the element-wise optimizer update rules,
 * and the softmax cross-entropy kernel (rows as vector lanes; see below).
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
 * Each rule's dispatch runs its body over long ranges in prefetched blocks
 * (FO_BLOCKED, below), over short ones in one go.
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FO_X86 1
#include <immintrin.h>
#else
#define FO_X86 0
#endif

#define FO_INLINE static inline __attribute__((always_inline))
/* Vectorise the next loop even where the cost model hesitates (strided
 * accesses); needs -fopenmp or -fopenmp-simd, else it is ignored. */
#define FO_SIMD _Pragma("omp simd")
#define FO_NOT_FINITE(x) (!(fabsf(x) <= FLT_MAX)) /* true for nan and +-inf */

/* Below this many elements the kernels run on the calling thread: waking an
 * idle OpenMP team costs more than the whole update. */
#ifndef FO_PARALLEL_MIN
#define FO_PARALLEL_MIN 262144
#endif

typedef int (*fo_kernel_fn)(const void *args, ptrdiff_t lo, ptrdiff_t hi);

/* The variants (FO_VARIANTS_CALL), also the indices of fo_tables. */
enum { FO_ISA_BASELINE = 0, FO_ISA_AVX2 = 1, FO_ISA_AVX512 = 2 };

/* Prefetching.  From FO_PREFETCH_MIN elements up, the update rules walk
 * their buffers in blocks of FO_BLOCK elements and, before each block, ask
 * for the lines FO_PREFETCH_AHEAD elements further on in every buffer they
 * read (FO_BLOCKED).  The hardware prefetchers keep only so many streams
 * going, so asking ahead speeds up the rules that walk many buffers once
 * these no longer fit in L2 (in L3 or DRAM); on buffers that fit in L2 it
 * slows SGD down, hence the threshold.  Asking for more lines at once
 * (longer blocks) was slower.  Whether it pays at all depends on the CPU's
 * own prefetchers: it does on Intel's server cores and costs time on AMD's
 * Zen cores, so it is chosen at run time (fo_prefetch, set at import from
 * the CPU's vendor; FASTOPT_PREFETCH=0/1 overrides).  The measurements are
 * in BENCHMARKS.md.  A prefetch never changes a result, and none reaches
 * outside [lo, hi). */
#ifndef FO_PREFETCH_AHEAD
#define FO_PREFETCH_AHEAD 512 /* elements: 2 KiB, 32 lines, per buffer */
#endif
#ifndef FO_PREFETCH_MIN
#define FO_PREFETCH_MIN 131072
#endif
#define FO_BLOCK 64 /* elements per block: 4 lines per buffer */

/* From this buffer length up (elements), Adam's low-precision parameter
 * copy is written with non-temporal stores (fo_stream16) on the AVX2 and
 * AVX-512 variants, with float32 state, when the copy starts on a 64-byte
 * line (fo_adam_streams): 8 MiB of bfloat16 or float16 copy, a step's
 * buffers then 72 MiB or more, beyond any core's share of cache, so the
 * copy would not be read from cache anyway.  A store to a line that is not
 * in cache first reads it (read for ownership): 2 bytes an element for a
 * 16-bit copy, 7% of a float32 Adam step's 28.  Below it, ordinary stores.
 * fo_stream_min is the setting (_kernels.set_stream_min, for tests and
 * benchmarks; the bits are the same either way). */
#ifndef FO_STREAM_MIN
#define FO_STREAM_MIN 4194304
#endif
static ptrdiff_t fo_stream_min = FO_STREAM_MIN;

/* 1: the update rules prefetch ahead on long ranges (FO_BLOCKED); 0: they
 * leave it to the hardware.  Read once per call. */
static int fo_prefetch = 1;

/* The prefetch default for this CPU: on for Intel, off elsewhere. */
static int fo_prefetch_default(void) {
#if FO_X86
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") ? 1 : 0;
#else
    return 0;
#endif
}

/* Ask for the lines FO_PREFETCH_AHEAD elements past block [b, b + FO_BLOCK)
 * of each of the n_streams buffers, if they end before hi. */
FO_INLINE void fo_ahead(const float *const *streams, int n_streams, ptrdiff_t b,
                        ptrdiff_t hi) {
    if (b + FO_PREFETCH_AHEAD + FO_BLOCK > hi) return;
    for (int k = 0; k < n_streams; k++) {
        const float *x = streams[k] + b + FO_PREFETCH_AHEAD;
        for (int j = 0; j < FO_BLOCK; j += 16) __builtin_prefetch(x + j, 0, 3);
    }
}

/* Moves the non-NULL buffers of s[0 .. n) to its front; returns how many. */
FO_INLINE int fo_pack(const float **s, int n) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s[i]) s[k++] = s[i];
    return k;
}

/* Run CALL, an expression over the variables fo_b and fo_e, on [LO, HI):
 * on the whole range if it is short, else block by block, [fo_b, fo_e) with
 * a constant FO_BLOCK elements, each after a prefetch of its streams, then
 * on the remainder.  CALL is an always-inline body, so every block is one
 * straight vector loop, provided that (1) the body gets its buffers as
 * restrict parameters (GCC honours restrict on the parameters of an inlined
 * function; on locals loaded from the argument struct it did not, and
 * checked every block for overlap), and (2) the scalars come from a local
 * copy of the argument struct (stores through the float buffers could
 * otherwise change it, and every block reloaded it). */
#define FO_BLOCKED(LO, HI, STREAMS, N_STREAMS, CALL)                           \
    do {                                                                       \
        const ptrdiff_t fo_hi = (HI);                                          \
        ptrdiff_t fo_b = (LO), fo_e;                                           \
        if (fo_prefetch && fo_hi - fo_b >= FO_PREFETCH_MIN) {                  \
            for (; fo_b + FO_BLOCK <= fo_hi; fo_b += FO_BLOCK) {               \
                fo_e = fo_b + FO_BLOCK;                                        \
                fo_ahead((STREAMS), (N_STREAMS), fo_b, fo_hi);                 \
                (void)(CALL);                                                  \
            }                                                                  \
        }                                                                      \
        fo_e = fo_hi;                                                          \
        if (fo_b < fo_e) (void)(CALL);                                         \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Low-precision formats.  A buffer's format is a compile-time constant of a
 * rule's body: fo_load widens an element to float32, fo_store_state and
 * fo_store_copy narrow one.  Every conversion is integer arithmetic on the
 * bits (and, for float16's subnormals, one exactly rounded float addition),
 * so every SIMD variant gives the same bits.
 *
 *   bfloat16 -> float32: the 16 bits are the high half (exact).
 *   float32 -> bfloat16, round to nearest even: (u + 0x7fff + lsb) >> 16,
 *     where lsb is bit 16 of u; nan stays a quiet nan (sign and top payload
 *     kept, bit 6 set).  Overflow rounds to inf, as in IEEE.
 *   float32 -> bfloat16, stochastic: (u + r) >> 16 with r 16 random bits,
 *     so |x| is rounded up with probability (dropped bits) / 2^16: unbiased.
 *     r comes from fo_sr_bits(key, i): a hash of the element index i
 *     (modulo 2^32) and key = fo_sr_key(seed, step), so it depends on
 *     neither the thread count nor the SIMD variant.
 *   float16 <-> float32: IEEE binary16, round to nearest even, subnormals,
 *     inf and nan kept (nan made quiet). */
enum { FO_F32 = 0, FO_F16 = 1, FO_BF16 = 2, FO_BF16_SR = 3, FO_NONE = 4, FO_Q8 = 5 };

FO_INLINE float fo_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

FO_INLINE uint32_t fo_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Selects as masks on the bits: a ?: on values the compiler may turn into a
 * branch (with a float operation inside it, which it will not speculate),
 * and a branch stops the loop vectorising.  c: 0 or 1. */
FO_INLINE uint32_t fo_selu(uint32_t c, uint32_t a, uint32_t b) {
    const uint32_t m = 0u - c;
    return (a & m) | (b & ~m);
}

FO_INLINE float fo_self(uint32_t c, float a, float b) {
    return fo_from_bits(fo_selu(c, fo_to_bits(a), fo_to_bits(b)));
}

/* lerp(a, b, w) = a + w (b - a) as PyTorch's lerp_ computes it: from b,
 * b + (w - 1)(b - a), when w >= 0.5, so that w = 1 gives b exactly whatever
 * a is (from a, a large a and a small b cancel).  Keras writes a + (b - a) w
 * at every w.  c = w or w - 1, and from_b, are set once per call. */
FO_INLINE float fo_lerp(float a, float b, float c, uint32_t from_b) {
    return fo_self(from_b, b, a) + c * (b - a);
}

/* float32 -> bfloat16 bits, adding `r` below the kept bits before the cut;
 * a nan is cut without adding, made quiet (u | 0x400000).  The select is on
 * the 32-bit words and the shift comes last, so that the vectoriser narrows
 * only the result (one pack per 16 elements; a select between two 16-bit
 * values made GCC pack both and the mask).  `x != x` is one compare. */
FO_INLINE uint16_t fo_bf16_round(float x, uint32_t r) {
    const uint32_t u = fo_to_bits(x);
    return (uint16_t)(fo_selu(x != x, u | 0x400000u, u + r) >> 16);
}

FO_INLINE uint16_t fo_bf16_rne(float x) {
    return fo_bf16_round(x, 0x7fffu + ((fo_to_bits(x) >> 16) & 1u));
}

/* float16 bits -> float32.  Worked on x = h << 16 (the half in the top 16
 * bits of a 32-bit word), so that no step fits in 16 bits: GCC then keeps
 * the whole conversion in 32-bit lanes instead of doing parts in 16-bit
 * lanes and widening each of them. */
FO_INLINE float fo_f16_to_f32(uint16_t h) {
    const uint32_t x = (uint32_t)h << 16;
    const uint32_t sign = x & 0x80000000u;
    const uint32_t e = x & 0x7c000000u;
    uint32_t o = ((x & 0x7fff0000u) >> 3) + (112u << 23); /* rebias the exponent */
    o = fo_selu(e == 0x7c000000u, o + (112u << 23), o);   /* inf / nan: exponent 255 */
    /* subnormal or zero: em * 2^-24 = (2^-14 (1 + em/1024)) - 2^-14, exact */
    const float sub = fo_from_bits(o + (1u << 23)) - fo_from_bits(113u << 23);
    o = fo_selu(e == 0, fo_to_bits(sub), o);
    return fo_from_bits(o | sign);
}

/* float32 -> float16 bits, round to nearest even.  Each case is built in the
 * top 16 bits of a 32-bit word (what lies below them is dropped by the last
 * shift), so that only the result is narrowed (see fo_bf16_round). */
FO_INLINE uint16_t fo_f32_to_f16(float x) {
    const uint32_t ux = fo_to_bits(x);
    const uint32_t sign = ux & 0x80000000u, u = ux & 0x7fffffffu;
    const uint32_t special = fo_selu(u > 0x7f800000u, 0x7e000000u, 0x7c000000u); /* nan / inf */
    /* below 2^-14 (subnormal result): 0.5 + |x| rounds at 2^-24, RNE */
    const uint32_t sub = (fo_to_bits(fo_from_bits(u) + 0.5f) - (126u << 23)) << 16;
    const uint32_t norm = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) << 3;
    const uint32_t o = fo_selu(u >= (143u << 23), special,
                               fo_selu(u < (113u << 23), sub, norm));
    return (uint16_t)((o | sign) >> 16);
}

/* A 32-bit mix with full avalanche (Wellons' lowbias32). */
FO_INLINE uint32_t fo_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The key of one step's stochastic rounding, from the seed and the step. */
static inline uint32_t fo_sr_key(uint32_t seed, long long step) {
    const uint64_t t = (uint64_t)step;
    return fo_mix32(seed ^ fo_mix32((uint32_t)t ^ fo_mix32((uint32_t)(t >> 32) + 0x9e3779b9u)));
}

/* 32 random bits for element i: the low 16 round the first moment, the
 * high 16 the second. */
FO_INLINE uint32_t fo_sr_bits(uint32_t key, ptrdiff_t i) {
    return fo_mix32((uint32_t)i ^ key);
}

FO_INLINE float fo_load(const void *X, ptrdiff_t i, const int fmt) {
    if (fmt == FO_F32) return ((const float *)X)[i];
    if (fmt == FO_F16) return fo_f16_to_f32(((const uint16_t *)X)[i]);
    return fo_from_bits((uint32_t)((const uint16_t *)X)[i] << 16); /* bfloat16 */
}

/* A state element: float32, or bfloat16 rounded to nearest even or (FO_BF16_SR)
 * stochastically with the 16 random bits r. */
FO_INLINE void fo_store_state(void *X, ptrdiff_t i, float x, const int fmt, uint32_t r) {
    if (fmt == FO_F32)
        ((float *)X)[i] = x;
    else if (fmt == FO_BF16_SR)
        ((uint16_t *)X)[i] = fo_bf16_round(x, r);
    else
        ((uint16_t *)X)[i] = fo_bf16_rne(x);
}

/* The low-precision copy of an updated parameter (none, float16, bfloat16), RNE. */
FO_INLINE void fo_store_copy(void *X, ptrdiff_t i, float x, const int fmt) {
    if (fmt == FO_F16)
        ((uint16_t *)X)[i] = fo_f32_to_f16(x);
    else if (fmt == FO_BF16)
        ((uint16_t *)X)[i] = fo_bf16_rne(x);
}

/* The 16 random bits that round state buffer k (0, 1, 2: the rule's state
 * buffers in order) of element i when it is stored stochastically (fmt
 * FO_BF16_SR); 0 for another format.  The low, then the high half of
 * fo_sr_bits, with the key changed for k >= 2: Adam's exp_avg (k = 0) and
 * exp_avg_sq (k = 1) take the same halves of the same hash. */
FO_INLINE uint32_t fo_sr_half(uint32_t key, ptrdiff_t i, const int k, const int fmt) {
    if (fmt != FO_BF16_SR) return 0u;
    return (fo_sr_bits(key ^ ((uint32_t)(k / 2) * 0x9e3779b9u), i) >> (16 * (k & 1))) & 0xffffu;
}

/* c ? a : b for a flag c that is the same for every element.  In a loop
 * over float32 buffers GCC unswitches a ?: on such a flag (one vector loop
 * per value); with 16-bit loads or stores in the loop it turned the ?: into
 * a branch instead, and the loop stayed scalar, so there (`bits`, a
 * constant) it is a select on the bits (fo_self): both sides computed. */
FO_INLINE float fo_pick(int c, float a, float b, const int bits) {
    return bits ? fo_self(c != 0, a, b) : (c ? a : b);
}

/* A buffer that fo_ahead may prefetch: the float32 ones (it counts in floats). */
FO_INLINE const float *fo_f32_stream(const void *x, int fmt) {
    return fmt == FO_F32 ? (const float *)x : NULL;
}

/* RUN(GF, SF) with the gradient format c.gfmt and the state format
 * (c.sfmt, c.stochastic) as compile-time constants: the low-precision
 * dispatch of SGD, Adagrad and RMSprop (float32, or bfloat16 rounded to
 * nearest even or stochastically; another sfmt, FO_NONE for a rule run
 * without state, runs as float32). */
#define FO_BY_GRAD(c, RUN, SF)                                                 \
    do {                                                                       \
        if ((c).gfmt == FO_F16) RUN(FO_F16, SF);                               \
        else if ((c).gfmt == FO_BF16) RUN(FO_BF16, SF);                        \
        else RUN(FO_F32, SF);                                                  \
    } while (0)
#define FO_BY_FORMATS(c, RUN)                                                  \
    do {                                                                       \
        if ((c).sfmt == FO_BF16 && (c).stochastic) FO_BY_GRAD(c, RUN, FO_BF16_SR); \
        else if ((c).sfmt == FO_BF16) FO_BY_GRAD(c, RUN, FO_BF16);             \
        else FO_BY_GRAD(c, RUN, FO_F32);                                       \
    } while (0)

#if FO_X86
/* float16 <-> float32 of n elements with F16C (vcvtph2ps, vcvtps2ph), for
 * the AVX2 and AVX-512 variants only (see FO_VARIANTS_CALL): the integer
 * conversions above cost 1.2 ns an element in the AVX2 Adam loop, these a
 * few instructions per 8.  The same bits as fo_f16_to_f32 / fo_f32_to_f16,
 * checked on all 2^32 floats with and without FTZ/DAZ: vcvtps2ph rounds to
 * nearest even by its immediate, ignores FTZ (float16 subnormals are kept)
 * and gives 0 for float32 subnormals either way; a nan is first replaced
 * with the quiet nan of its sign, which is what fo_f32_to_f16 gives
 * (vcvtps2ph would keep payload bits).  Widening is exact; a signalling
 * nan may come out quiet, so the widened gradient is only to be read
 * through an arithmetic operation (Adam's gscale * g), which quiets it in
 * every variant.  Tails shorter than 8 use the integer conversions. */
static inline __attribute__((target("avx2,f16c"))) void
fo_f16c_widen(const uint16_t *restrict h, float *restrict f, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) f[i] = fo_f16_to_f32(h[i]);
}

static inline __attribute__((target("avx2,f16c"))) void
fo_f16c_narrow(const float *restrict f, uint16_t *restrict h, ptrdiff_t n) {
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(f + i);
        const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
        const __m256 q = _mm256_or_ps(_mm256_and_ps(x, sign), qnan);
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_blendv_ps(x, q, nan), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) h[i] = fo_f32_to_f16(f[i]);
}

/* h[i] = fo_bf16_rne(f[i]) for i < n (one vector loop). */
FO_INLINE void fo_bf16_narrow(const float *restrict f, uint16_t *restrict h, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) h[i] = fo_bf16_rne(f[i]);
}

/* Copies n 16-bit values from s (a buffer in L1) to d, with non-temporal
 * stores from d's first 64-byte line on (ordinary ones before it, and for
 * a tail under 16).  The callers' ranges start on whole lines of a 64-byte
 * aligned copy (fo_adam_streams, fo_run), so the head loop is only a
 * safety net, and only the buffer's last line can be written both ways, by
 * one thread.  Non-temporal stores are weakly ordered: the kernel call
 * that makes them ends with _mm_sfence (fo_adam_dispatch). */
static inline __attribute__((target("avx2"))) void
fo_stream16(const uint16_t *restrict s, uint16_t *restrict d, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(d + i) & 63u) != 0; i++) d[i] = s[i];
    for (; i + 16 <= n; i += 16)
        _mm256_stream_si256((__m256i *)(d + i), _mm256_loadu_si256((const __m256i *)(s + i)));
    for (; i < n; i++) d[i] = s[i];
}
#endif

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
 *
 * Low precision (as Adam's, see fo_load): g float32, float16 or bfloat16;
 * the buffer float32 or bfloat16, stored rounded (nearest even, or
 * stochastically with fo_sr_half(key, i, 0)) while this step's update uses
 * its float32 value.
 */
typedef struct {
    float *p; const void *g; void *buf;
    float p_scale, gscale, wd, mu, c, nd, s;
    int has_wd, first, nesterov;
    int gfmt, sfmt, stochastic;       /* formats: see fo_load; FO_BY_FORMATS */
    uint32_t key;                     /* fo_sr_key(seed, step), stochastic rounding */
} fo_sgd_args;

FO_INLINE int fo_sgd_body(const fo_sgd_args *a, float *restrict P,
                          const void *restrict G, void *restrict B,
                          ptrdiff_t lo, ptrdiff_t hi, const int has_buf,
                          const int gf, const int sf) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd, mu = a->mu,
                c = a->c, nd = a->nd, s = a->s;
    const int has_wd = a->has_wd, first = a->first, nesterov = a->nesterov;
    const uint32_t key = a->key;
    const int bits = gf != FO_F32 || sf != FO_F32; /* see fo_pick */
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = fo_load(G, i, gf);
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = fo_pick(has_wd, d + wd * p, d, bits);
        if (has_buf) {
            const float b = fo_pick(first, d, mu * fo_load(B, i, sf) + c * d, bits);
            fo_store_state(B, i, b, sf, fo_sr_half(key, i, 0, sf));
            const float u = fo_pick(nesterov, mu * b + nd * d, b, bits);
            P[i] = p + s * u;
        } else {
            P[i] = p + s * d;
        }
    }
    return 0;
}

#define FO_SGD_BUF(GF, SF) \
    FO_BLOCKED(lo, hi, st, ns, fo_sgd_body(&c, c.p, c.g, c.buf, fo_b, fo_e, 1, GF, SF))
#define FO_SGD_NOBUF(GF, SF) \
    FO_BLOCKED(lo, hi, st, ns, fo_sgd_body(&c, c.p, c.g, c.buf, fo_b, fo_e, 0, GF, SF))

FO_INLINE int fo_sgd_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_sgd_args c = *(const fo_sgd_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, fo_f32_stream(c.g, c.gfmt), fo_f32_stream(c.buf, c.sfmt)};
    const int ns = fo_pack(st, 3);
    if (c.buf)
        FO_BY_FORMATS(c, FO_SGD_BUF);
    else
        FO_BY_GRAD(c, FO_SGD_NOBUF, FO_F32);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adagrad.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   s <- s + d * d
 *   den = eps_inside ? sqrt(s + eps) : sqrt(s) + eps
 *   p <- p + (neg_clr * d) / den
 *
 * PyTorch: eps outside the root, neg_clr = -lr / (1 + (step - 1) lr_decay).
 * Keras:   eps inside the root.
 * Both multiply before they divide (torch's addcdiv, Keras' lr * g / den):
 * the same order gives their bits.
 *
 * Low precision as SGD's: the sum float32 or bfloat16 (stored rounded,
 * fo_sr_half(key, i, 0)); den uses the float32 sum.
 */
typedef struct {
    float *p; const void *g; void *sum;
    float p_scale, gscale, wd, eps, neg_clr;
    int has_wd, eps_inside;
    int gfmt, sfmt, stochastic;       /* formats: see fo_load; FO_BY_FORMATS */
    uint32_t key;                     /* fo_sr_key(seed, step), stochastic rounding */
} fo_adagrad_args;

FO_INLINE int fo_adagrad_body(const fo_adagrad_args *a, float *restrict P,
                              const void *restrict G, void *restrict S,
                              ptrdiff_t lo, ptrdiff_t hi, const int gf, const int sf) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                eps = a->eps, neg_clr = a->neg_clr;
    const int has_wd = a->has_wd, eps_inside = a->eps_inside;
    const uint32_t key = a->key;
    const int bits = gf != FO_F32 || sf != FO_F32; /* see fo_pick */
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = fo_load(G, i, gf);
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = fo_pick(has_wd, d + wd * p, d, bits);
        const float s = fo_load(S, i, sf) + d * d;
        fo_store_state(S, i, s, sf, fo_sr_half(key, i, 0, sf));
        const float den = fo_pick(eps_inside, sqrtf(s + eps), sqrtf(s) + eps, bits);
        P[i] = p + (neg_clr * d) / den;
    }
    return 0;
}

#define FO_ADAGRAD_RUN(GF, SF) \
    FO_BLOCKED(lo, hi, st, ns, fo_adagrad_body(&c, c.p, c.g, c.sum, fo_b, fo_e, GF, SF))

FO_INLINE int fo_adagrad_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_adagrad_args c = *(const fo_adagrad_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, fo_f32_stream(c.g, c.gfmt), fo_f32_stream(c.sum, c.sfmt)};
    const int ns = fo_pack(st, 3);
    FO_BY_FORMATS(c, FO_ADAGRAD_RUN);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* RMSprop, plain / centred / with momentum, in PyTorch's or Keras' form.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   v <- alpha * v + (sq_first ? (1 - alpha) * (d * d) : ((1 - alpha) * d) * d)
 *   centred: a <- lerp(a, d, 1 - alpha);  w = v - a * a   else w = v
 *   den = eps_inside ? sqrt(w + eps) : sqrt(w) + eps
 *   momentum: b <- mu * b + (c * d) / den;  p <- p + s * b
 *   else:     p <- p + (s * d) / den
 *
 * PyTorch: eps outside, c = 1, s = -lr; ((1 - alpha) * d) * d (addcmul's order).
 * Keras:   eps inside, c = lr, s = -1 with momentum (s = -lr without);
 *          (1 - alpha) * (d * d) (ops.square first).
 * Each product and quotient is taken in its framework's order, so that a
 * step gives its bits (a 1-ulp difference in a step grows over a training
 * run where gradients are near 0, since d / den hardly depends on |d|).
 *
 * Low precision as SGD's: v, b and a all float32 or all bfloat16, each
 * stored rounded (stochastically with fo_sr_half(key, i, k), k = 0 for v,
 * 1 for b, 2 for a) while this step uses their float32 values.
 */
typedef struct {
    float *p; const void *g; void *sq; void *buf; void *gavg;
    float p_scale, gscale, wd, alpha, one_m_alpha, eps, mu, c, s;
    float a_c;                        /* fo_lerp's c and from_b for the centred average */
    int has_wd, eps_inside, a_from_d, sq_first;
    int gfmt, sfmt, stochastic;       /* formats: see fo_load; FO_BY_FORMATS */
    uint32_t key;                     /* fo_sr_key(seed, step), stochastic rounding */
} fo_rmsprop_args;

FO_INLINE int fo_rmsprop_body(const fo_rmsprop_args *a, float *restrict P,
                              const void *restrict G, void *restrict V,
                              void *restrict B, void *restrict A,
                              ptrdiff_t lo, ptrdiff_t hi, const int has_buf,
                              const int centered, const int gf, const int sf) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                alpha = a->alpha, one_m_alpha = a->one_m_alpha, eps = a->eps,
                mu = a->mu, c = a->c, s = a->s, a_c = a->a_c;
    const int has_wd = a->has_wd, eps_inside = a->eps_inside, a_from_d = a->a_from_d,
              sq_first = a->sq_first;
    const uint32_t key = a->key;
    /* see fo_pick; centred with momentum, the float32 loop stayed scalar too */
    const int bits = gf != FO_F32 || sf != FO_F32 || (has_buf && centered);
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = fo_load(G, i, gf);
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = fo_pick(has_wd, d + wd * p, d, bits);
        const float sq = fo_pick(sq_first, one_m_alpha * (d * d), (one_m_alpha * d) * d, bits);
        const float v = alpha * fo_load(V, i, sf) + sq;
        fo_store_state(V, i, v, sf, fo_sr_half(key, i, 0, sf));
        float w = v;
        if (centered) {
            const float ga = fo_lerp(fo_load(A, i, sf), d, a_c, a_from_d);
            fo_store_state(A, i, ga, sf, fo_sr_half(key, i, 2, sf));
            w = v - ga * ga;
        }
        const float den = fo_pick(eps_inside, sqrtf(w + eps), sqrtf(w) + eps, bits);
        if (has_buf) {
            const float b = mu * fo_load(B, i, sf) + (c * d) / den;
            fo_store_state(B, i, b, sf, fo_sr_half(key, i, 1, sf));
            P[i] = p + s * b;
        } else {
            P[i] = p + (s * d) / den;
        }
    }
    return 0;
}

#define FO_RMSPROP_RUN(HB, CE, GF, SF)                                              \
    FO_BLOCKED(lo, hi, st, ns, fo_rmsprop_body(&c, c.p, c.g, c.sq, c.buf, c.gavg, \
                                               fo_b, fo_e, HB, CE, GF, SF))
#define FO_RMSPROP_11(GF, SF) FO_RMSPROP_RUN(1, 1, GF, SF)
#define FO_RMSPROP_10(GF, SF) FO_RMSPROP_RUN(1, 0, GF, SF)
#define FO_RMSPROP_01(GF, SF) FO_RMSPROP_RUN(0, 1, GF, SF)
#define FO_RMSPROP_00(GF, SF) FO_RMSPROP_RUN(0, 0, GF, SF)

FO_INLINE int fo_rmsprop_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_rmsprop_args c = *(const fo_rmsprop_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, fo_f32_stream(c.g, c.gfmt), fo_f32_stream(c.sq, c.sfmt),
                         fo_f32_stream(c.buf, c.sfmt), fo_f32_stream(c.gavg, c.sfmt)};
    const int ns = fo_pack(st, 5);
    if (c.buf && c.gavg)
        FO_BY_FORMATS(c, FO_RMSPROP_11);
    else if (c.buf)
        FO_BY_FORMATS(c, FO_RMSPROP_10);
    else if (c.gavg)
        FO_BY_FORMATS(c, FO_RMSPROP_01);
    else
        FO_BY_FORMATS(c, FO_RMSPROP_00);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adam / AdamW / AMSGrad.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   m <- lerp(m, d, 1 - beta1)       (fo_lerp: PyTorch's or Keras' form)
 *   v <- beta2 * v + (1 - beta2) * d * d
 *   amsgrad: vmax <- max(vmax, v) (nan propagates);  w = vmax   else w = v
 *   p <- p + neg_step * (m / (sqrt(w) * dscale + eps))
 *
 * PyTorch: neg_step = -lr / bc1, dscale = 1 / sqrt(bc2)   (eps after bias
 *          correction), bc1 = 1 - beta1^t and bc2 = 1 - beta2^t in double.
 * Keras:   neg_step = -lr sqrt(bc2) / bc1, dscale = 1      (eps before it).
 *
 * Low precision (formats: see fo_load): g float32, float16 or bfloat16; m
 * and v both float32 or both bfloat16, stored rounded (nearest even, or
 * stochastically with fo_sr_bits(key, i): its low 16 bits for m, its high 16
 * for v), while this step's update uses their float32 values; optionally a
 * float16 or bfloat16 copy of the new p (nearest even).  AMSGrad runs in
 * float32 only.
 */
typedef struct {
    float *p; const void *g; void *m; void *v; float *vmax; void *pcopy;
    float *scales; /* 8-bit state: the blocks' scales of m, then of v */
    float p_scale, gscale, wd, m_c, beta2, one_m_beta2, dscale, eps,
          neg_step;
    int has_wd, m_from_d;             /* m_c, m_from_d: fo_lerp's c and from_b */
    int gfmt, sfmt, cfmt, stochastic; /* FO_F32 / FO_F16 / FO_BF16 / FO_Q8; see fo_load */
    uint32_t key;                     /* fo_sr_key(seed, step), stochastic rounding */
    ptrdiff_t n;                      /* the buffers' length (8-bit state's last block) */
    int stream; /* set by fo_adam_dispatch on its own copy: fo_adam_streams, read once */
} fo_adam_args;

/* d (the gradient term), p (after decoupled decay), m and v of one element.
 * plain (a compile-time constant): the call has no L2 decay (has_wd 0) and
 * lerps from m (m_from_d 0), the usual case; the two selects then fold away
 * (on AVX2 they were 6 of the float32 loop's 30 instructions per 8
 * elements) and the result is the same. */
FO_INLINE void fo_adam_moments(const fo_adam_args *k, float p_in, float g, float m0,
                               float v0, float *p, float *m, float *v, const int plain) {
    const float pp = p_in * k->p_scale;
    const float d0 = k->gscale * g;
    const float d = plain ? d0 : fo_self(k->has_wd != 0, d0 + k->wd * pp, d0); /* see fo_selu */
    *p = pp;
    *m = fo_lerp(m0, d, k->m_c, plain ? 0u : (uint32_t)k->m_from_d);
    *v = k->beta2 * v0 + k->one_m_beta2 * (d * d);
}

/* The updated parameter from p, m and the second moment w. */
FO_INLINE float fo_adam_param(const fo_adam_args *k, float p, float m, float w) {
    return p + k->neg_step * (m / (sqrtf(w) * k->dscale + k->eps));
}

/* One element of Adam; the formats are compile-time constants (fo_load,
 * fo_store_state), so each combination is one straight vector loop.  The
 * update uses the moments in float32; only what is stored is rounded.
 * Element i's gradient is G[i - g0] (fo_adam_f16c passes a chunk's). */
FO_INLINE int fo_adam_body(const fo_adam_args *a, float *restrict P,
                           const void *restrict G, void *restrict M,
                           void *restrict V, float *restrict VM,
                           void *restrict PC,
                           ptrdiff_t lo, ptrdiff_t hi, const int amsgrad,
                           const int gf, const int sf, const int cf, const int plain,
                           ptrdiff_t g0) {
    const fo_adam_args k = *a; /* local: the stores cannot change it */
    const uint32_t key = a->key;
    for (ptrdiff_t i = lo; i < hi; i++) {
        float p, m, v;
        fo_adam_moments(&k, P[i], fo_load(G, i - g0, gf), fo_load(M, i, sf),
                        fo_load(V, i, sf), &p, &m, &v, plain);
        const uint32_t r = sf == FO_BF16_SR ? fo_sr_bits(key, i) : 0u;
        fo_store_state(M, i, m, sf, r & 0xffffu);
        fo_store_state(V, i, v, sf, r >> 16);
        float w = v;
        if (amsgrad) {
            const float old = VM[i];
            w = (old >= v || old != old) ? old : v;
            VM[i] = w;
        }
        const float pn = fo_adam_param(&k, p, m, w);
        P[i] = pn;
        fo_store_copy(PC, i, pn, cf);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adam with 8-bit block-wise state (Dettmers et al., "8-bit Optimizers via
 * Block-wise Quantization", ICLR 2022).  The buffers are cut in blocks of
 * FO_Q8_BLOCK elements; each block of each moment keeps one float32 scale,
 * its largest |value|, and one byte per element: a small float relative to
 * the scale (the role of the paper's dynamic map, but computed with integer
 * arithmetic instead of a table search, so that it vectorises and every SIMD
 * variant gives the same bits):
 *
 *   exp_avg (signed):      sign bit, 4-bit exponent e (1..15), 3-bit mantissa f;
 *                          value = scale * 2^(e - 15) * (1 + f/8), code 0 = 0.
 *                          Range 2^-14 .. 1 of the scale; below, 0.
 *   exp_avg_sq (unsigned): 5-bit exponent e (1..31), 3-bit mantissa f;
 *                          value = scale * 2^(e - 31) * (1 + f/8), code 0 = 0.
 *                          Range 2^-30 .. 1; a positive value below it is
 *                          stored as the smallest code (rounded up, so that
 *                          an element's step never grows from the rounding).
 *
 * Encoding: y = |x| * (1 / scale) (float32, clamped to 1), its mantissa
 * rounded to 3 bits to nearest even on the bits.  One pass per block: widen,
 * update as fo_adam (the parameter update uses the float32 moments), note
 * the new largest |m| and |v|, then encode with the new scales (the block's
 * moments are kept in float32 on the stack between the two loops: 16 KiB, in
 * L1).  A nan moment makes its block's scale nan (the state is then lost, as
 * it would be for that element in float32); skip_nonfinite avoids it.  A
 * block belongs to the thread whose range holds its first element, so the
 * results do not depend on the thread count. */
#ifndef FO_Q8_BLOCK
#define FO_Q8_BLOCK 2048
#endif

/* The code of |x| / scale (y in [0, 1], or nan), with `bias` (15 or 31) and
 * `under`: the code of a positive value below the smallest (0 or 8); in the
 * top byte (code << 24; the bits below it are not zero), see below.
 * After the rounding, w >> 20 is the float's exponent and 3 mantissa bits,
 * E * 8 + f, so the code (E - 127 + bias) * 8 + f is (w - (127 - bias) *
 * 2^23) >> 20 (an arithmetic shift: below the range it is negative), and
 * "exponent below the range" is "code < 8"; y <= 1 keeps the code at most
 * bias * 8.  The code in the top byte is w << 4 (bits 20-27 of w, whose
 * bits 0-19 the caller's last shift drops), and the tests on the code are
 * tests on w, so no shift back and forth (one instruction per moment less
 * than shifting the code down and up again; the same top byte for every y,
 * checked on all 2^31 non-negative floats).  Each step is one vector
 * instruction.  The code is returned in the top byte so that the caller's
 * last operation is a right shift by 24: GCC then narrows only that result
 * to bytes (one pack chain per 32 elements); a mask or sign applied to the
 * 8-bit value made it narrow and pack each operand separately. */
FO_INLINE uint32_t fo_q8_mag_hi(float y, const uint32_t bias, const uint32_t under) {
    uint32_t u = fo_to_bits(y); /* y >= 0: its bits order as its values */
    u = u < 0x3f800000u ? u : 0x3f800000u; /* at most 1 (nan too: its scale is nan) */
    const int32_t w = (int32_t)(u + (0x7ffffu - ((127u - bias) << 23)) + ((u >> 20) & 1u));
    if (under == 0) /* (a constant) 0 below the range (code < 8), and for 0 */
        return ((uint32_t)w << 4) & (0u - (uint32_t)(w >= (8 << 20)));
    /* the smallest code below the range; 0 stays 0 */
    const int32_t least = (int32_t)(under << 20);
    return ((uint32_t)(w > least ? w : least) << 4) & (0u - (uint32_t)(u != 0));
}

/* The value of magnitude code mag (times the scale, by the caller), given
 * as mag20 = mag << 20: ((mag >> 3) + 127 - bias) << 23 | (mag & 7) << 20 is
 * mag20 plus a constant. */
FO_INLINE float fo_q8_value(uint32_t mag20, const uint32_t bias) {
    const uint32_t bits = mag20 + ((127u - bias) << 23);
    return fo_from_bits(bits & (0u - (uint32_t)(mag20 != 0)));
}

/* exp_avg's code is used as c << 24 only (sign on top, magnitude below it),
 * so that GCC widens the bytes once; from c & 0x7f and c & 0x80 it widened
 * each separately. */
FO_INLINE float fo_q8_load_m(const uint8_t *M, ptrdiff_t i, float scale) {
    const uint32_t c = (uint32_t)M[i] << 24;
    const float x = fo_q8_value((c << 1) >> 5, 15u) * scale;
    return fo_from_bits(fo_to_bits(x) | (c & 0x80000000u));
}

FO_INLINE float fo_q8_load_v(const uint8_t *V, ptrdiff_t i, float scale) {
    return fo_q8_value((uint32_t)V[i] << 20, 31u) * scale;
}

/* Adam over the blocks of 8-bit state whose first element is in [lo, hi)
 * (see above; n: the buffers' length). */
FO_INLINE int fo_adam8_body(const fo_adam_args *a, float *restrict P,
                            const void *restrict G, uint8_t *restrict M,
                            uint8_t *restrict V, float *restrict S,
                            void *restrict PC, ptrdiff_t lo, ptrdiff_t hi,
                            const int gf, const int cf, const int plain) {
    const fo_adam_args k = *a; /* local: the stores cannot change it */
    const ptrdiff_t n = a->n, nb = (n + FO_Q8_BLOCK - 1) / FO_Q8_BLOCK;
    float tm[FO_Q8_BLOCK], tv[FO_Q8_BLOCK];
    for (ptrdiff_t b = (lo + FO_Q8_BLOCK - 1) / FO_Q8_BLOCK; b * FO_Q8_BLOCK < hi; b++) {
        const ptrdiff_t b0 = b * FO_Q8_BLOCK;
        const ptrdiff_t len = n - b0 < FO_Q8_BLOCK ? n - b0 : FO_Q8_BLOCK;
        const float ms = S[b], vs = S[nb + b];
        uint32_t am = 0, av = 0; /* largest |m|, |v| as bits: nan is largest */
        for (ptrdiff_t j = 0; j < len; j++) {
            const ptrdiff_t i = b0 + j;
            float p, m, v;
            fo_adam_moments(&k, P[i], fo_load(G, i, gf), fo_q8_load_m(M, i, ms),
                            fo_q8_load_v(V, i, vs), &p, &m, &v, plain);
            tm[j] = m;
            tv[j] = v;
            const uint32_t bm = fo_to_bits(m) & 0x7fffffffu, bv = fo_to_bits(v) & 0x7fffffffu;
            am = bm > am ? bm : am;
            av = bv > av ? bv : av;
            const float pn = fo_adam_param(&k, p, m, v);
            P[i] = pn;
            fo_store_copy(PC, i, pn, cf);
        }
        const float sm = fo_from_bits(am), sv = fo_from_bits(av);
        const float im = sm > 0.0f ? 1.0f / sm : 0.0f, iv = sv > 0.0f ? 1.0f / sv : 0.0f;
        for (ptrdiff_t j = 0; j < len; j++) {
            const uint32_t sign = fo_to_bits(tm[j]) & 0x80000000u;
            M[b0 + j] = (uint8_t)((fo_q8_mag_hi(fabsf(tm[j]) * im, 15u, 0u) | sign) >> 24);
            V[b0 + j] = (uint8_t)(fo_q8_mag_hi(tv[j] * iv, 31u, 8u) >> 24);
        }
        S[b] = sm;
        S[nb + b] = sv;
    }
    return 0;
}

#define FO_ADAM8_RUN(GF, CF)                                                       \
    fo_adam8_body(c, c->p, c->g, (uint8_t *)c->m, (uint8_t *)c->v, c->scales, c->pcopy, \
                  lo, hi, GF, CF, pl)

FO_INLINE void fo_adam8_cf(const fo_adam_args *c, ptrdiff_t lo, ptrdiff_t hi, const int gf,
                           const int pl) {
    if (c->cfmt == FO_F16)
        FO_ADAM8_RUN(gf, FO_F16);
    else if (c->cfmt == FO_BF16)
        FO_ADAM8_RUN(gf, FO_BF16);
    else
        FO_ADAM8_RUN(gf, FO_NONE);
}

FO_INLINE void fo_adam8(const fo_adam_args *c, ptrdiff_t lo, ptrdiff_t hi, const int pl) {
    if (c->gfmt == FO_F16)
        fo_adam8_cf(c, lo, hi, FO_F16, pl);
    else if (c->gfmt == FO_BF16)
        fo_adam8_cf(c, lo, hi, FO_BF16, pl);
    else
        fo_adam8_cf(c, lo, hi, FO_F32, pl);
}

#ifndef FO_F16C_CHUNK
#define FO_F16C_CHUNK 256
#endif

/* fo_adam_body over [lo, hi) FO_F16C_CHUNK elements at a time, with the
 * conversions and stores the body cannot make around the float32 loop: a
 * float16 gradient (gf) widened by F16C into a stack buffer; a float16 copy
 * (cf) narrowed by F16C from the parameters just written (in L1); and with
 * stream (see FO_STREAM_MIN) a float16 or bfloat16 copy narrowed into a
 * stack buffer (bfloat16 by fo_bf16_rne) and written by fo_stream16.  AVX2
 * and AVX-512 variants only; the same bits as the body alone. */
FO_INLINE int fo_adam_f16c(const fo_adam_args *c, ptrdiff_t lo, ptrdiff_t hi, const int gf,
                           const int sf, const int cf, const int pl, const int stream) {
#if FO_X86
    float g32[FO_F16C_CHUNK];
    uint16_t c16[FO_F16C_CHUNK];
    float *const p = c->p;
    uint16_t *const pc = (uint16_t *)c->pcopy;
    const int body_copies = cf == FO_BF16 && !stream;
    for (ptrdiff_t b = lo; b < hi; b += FO_F16C_CHUNK) {
        const ptrdiff_t e = hi - b < FO_F16C_CHUNK ? hi : b + FO_F16C_CHUNK;
        if (gf == FO_F16) fo_f16c_widen((const uint16_t *)c->g + b, g32, e - b);
        fo_adam_body(c, p, gf == FO_F16 ? (const void *)g32 : c->g, c->m, c->v, NULL,
                     c->pcopy, b, e, 0, gf == FO_F16 ? FO_F32 : gf, sf,
                     body_copies ? cf : FO_NONE, pl, gf == FO_F16 ? b : 0);
        if (cf == FO_F16) fo_f16c_narrow(p + b, stream ? c16 : pc + b, e - b);
        if (cf == FO_BF16 && stream) fo_bf16_narrow(p + b, c16, e - b);
        if (cf != FO_NONE && stream) fo_stream16(c16, pc + b, e - b);
    }
#else
    (void)c, (void)lo, (void)hi, (void)gf, (void)sf, (void)cf, (void)pl, (void)stream;
#endif
    return 0;
}

/* Adam over [lo, hi) (FO_BLOCKED); the float16 conversions by F16C and a
 * streamed copy (STREAM) where the variant (isa) has them. */
#define FO_ADAM_RUN(AMS, GF, SF, CF, STREAM)                                       \
    FO_BLOCKED(lo, hi, st, ns,                                                     \
               (isa != FO_ISA_BASELINE &&                                          \
                ((GF) == FO_F16 || (CF) == FO_F16 || ((CF) != FO_NONE && (STREAM)))) \
                   ? fo_adam_f16c(c, fo_b, fo_e, GF, SF, CF, pl, STREAM)           \
                   : fo_adam_body(c, c->p, c->g, c->m, c->v, c->vmax, c->pcopy,    \
                                  fo_b, fo_e, AMS, GF, SF, CF, pl, 0))

/* Whether a call's copy is streamed (fo_stream16): on the AVX2 and AVX-512
 * variants, with float32 state, for a copy that starts on a 64-byte line,
 * of fo_stream_min elements or more (the whole buffer's length, so not the
 * thread count).  With bfloat16 state the streamed copy measured no faster
 * as the package is compiled (docs/low_precision.md), and 8-bit state's
 * block body stores the copy itself. */
FO_INLINE int fo_adam_streams(const fo_adam_args *c, const int isa) {
    return isa != FO_ISA_BASELINE && c->cfmt != FO_NONE && c->sfmt == FO_F32 &&
           c->n >= fo_stream_min && ((uintptr_t)c->pcopy & 63u) == 0;
}

/* The copy format as a constant (none, float16 or bfloat16). */
FO_INLINE void fo_adam_cf(const fo_adam_args *c, const float *const *st, int ns,
                          ptrdiff_t lo, ptrdiff_t hi, const int gf, const int sf,
                          const int pl, const int isa) {
    if (c->cfmt == FO_F16)
        FO_ADAM_RUN(0, gf, sf, FO_F16, c->stream);
    else if (c->cfmt == FO_BF16)
        FO_ADAM_RUN(0, gf, sf, FO_BF16, c->stream);
    else
        FO_ADAM_RUN(0, gf, sf, FO_NONE, 0);
}

/* The state format as a constant (float32, bfloat16 rounded to nearest or
 * stochastically). */
FO_INLINE void fo_adam_sf(const fo_adam_args *c, const float *const *st, int ns,
                          ptrdiff_t lo, ptrdiff_t hi, const int gf, const int pl,
                          const int isa) {
    if (c->sfmt == FO_BF16 && c->stochastic)
        fo_adam_cf(c, st, ns, lo, hi, gf, FO_BF16_SR, pl, isa);
    else if (c->sfmt == FO_BF16)
        fo_adam_cf(c, st, ns, lo, hi, gf, FO_BF16, pl, isa);
    else
        fo_adam_cf(c, st, ns, lo, hi, gf, FO_F32, pl, isa);
}

/* The formats as constants, pl (fo_adam_moments' plain) and the variant. */
FO_INLINE void fo_adam_formats(const fo_adam_args *c, ptrdiff_t lo, ptrdiff_t hi, const int pl,
                               const int isa) {
    const fo_adam_args cc = *c;
    /* only the float32 buffers are prefetched (fo_ahead counts in floats) */
    const float *st[] = {cc.p, cc.gfmt == FO_F32 ? (const float *)cc.g : NULL,
                         cc.sfmt == FO_F32 ? (const float *)cc.m : NULL,
                         cc.sfmt == FO_F32 ? (const float *)cc.v : NULL, cc.vmax};
    const int ns = fo_pack(st, 5);
    /* amsgrad only with float32 state, gradient and no copy (checked before) */
    if (cc.vmax)
        FO_ADAM_RUN(1, FO_F32, FO_F32, FO_NONE, 0);
    else if (cc.sfmt == FO_Q8)
        fo_adam8(c, lo, hi, pl);
    else if (cc.gfmt == FO_F16)
        fo_adam_sf(c, st, ns, lo, hi, FO_F16, pl, isa);
    else if (cc.gfmt == FO_BF16)
        fo_adam_sf(c, st, ns, lo, hi, FO_BF16, pl, isa);
    else
        fo_adam_sf(c, st, ns, lo, hi, FO_F32, pl, isa);
}

FO_INLINE int fo_adam_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi, const int isa) {
    fo_adam_args c = *(const fo_adam_args *)v; /* see FO_BLOCKED */
    /* decided once: fo_stream_min may change while the call runs */
    c.stream = fo_adam_streams(&c, isa);
    if (!c.has_wd && !c.m_from_d)
        fo_adam_formats(&c, lo, hi, 1, isa);
    else
        fo_adam_formats(&c, lo, hi, 0, isa);
#if FO_X86
    if (c.stream) _mm_sfence(); /* the copy's stores, before returning */
#endif
    return 0;
}

/* ------------------------------------------------------------------------ */
/* NAdam (Nesterov Adam), in PyTorch's or Keras' form (one body).
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   m <- lerp(m, d, 1 - beta1)       (fo_lerp: PyTorch's or Keras' form)
 *   v <- beta2 * v + (1 - beta2) * d * d
 *   den = sqrt(v / bc2) + eps
 *   p <- (p + cg * (d / den)) + cm * (m / den)
 *
 * mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)), prod_t = mu_1 ... mu_t
 * (in double, from t); cg = -lr (1 - mu_t) / (1 - prod_t),
 * cm = -lr mu_{t+1} / (1 - prod_t mu_{t+1}), bc2 = 1 - beta2^t.
 * PyTorch: momentum_decay 0.004.  Keras: 0.96^t, i.e. momentum_decay 1.
 */
typedef struct {
    float *p; const float *g; float *m; float *v;
    float p_scale, gscale, wd, m_c, beta2, one_m_beta2, bc2, eps, cg, cm;
    int has_wd, m_from_d;             /* m_c, m_from_d: fo_lerp's c and from_b */
} fo_nadam_args;

FO_INLINE int fo_nadam_body(const fo_nadam_args *a, float *restrict P,
                            const float *restrict G, float *restrict M,
                            float *restrict V, ptrdiff_t lo, ptrdiff_t hi) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                m_c = a->m_c, beta2 = a->beta2,
                one_m_beta2 = a->one_m_beta2, bc2 = a->bc2, eps = a->eps,
                cg = a->cg, cm = a->cm;
    const int has_wd = a->has_wd, m_from_d = a->m_from_d;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float m = fo_lerp(M[i], d, m_c, m_from_d);
        const float v = beta2 * V[i] + one_m_beta2 * (d * d);
        M[i] = m;
        V[i] = v;
        const float den = sqrtf(v / bc2) + eps;
        P[i] = (p + cg * (d / den)) + cm * (m / den);
    }
    return 0;
}

FO_INLINE int fo_nadam_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_nadam_args c = *(const fo_nadam_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, c.g, c.m, c.v};
    FO_BLOCKED(lo, hi, st, 4, fo_nadam_body(&c, c.p, c.g, c.m, c.v, fo_b, fo_e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adamax (infinity-norm Adam), in PyTorch's or Keras' form.
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   m <- lerp(m, d, 1 - beta1)       (fo_lerp: PyTorch's or Keras' form)
 *   u <- max(beta2 * u, |d| + eps_in)        (nan propagates)
 *   p <- p + neg_step * (m / (u + eps_out))
 *
 * neg_step = -lr / (1 - beta1^t) (double).
 * PyTorch: eps_in = eps, eps_out = 0.   Keras: eps_in = 0, eps_out = eps.
 */
typedef struct {
    float *p; const float *g; float *m; float *u;
    float p_scale, gscale, wd, m_c, beta2, eps_in, eps_out, neg_step;
    int has_wd, m_from_d;             /* m_c, m_from_d: fo_lerp's c and from_b */
} fo_adamax_args;

FO_INLINE int fo_adamax_body(const fo_adamax_args *a, float *restrict P,
                             const float *restrict G, float *restrict M,
                             float *restrict U, ptrdiff_t lo, ptrdiff_t hi) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd,
                m_c = a->m_c, beta2 = a->beta2, eps_in = a->eps_in,
                eps_out = a->eps_out, neg_step = a->neg_step;
    const int has_wd = a->has_wd, m_from_d = a->m_from_d;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float m = fo_lerp(M[i], d, m_c, m_from_d);
        M[i] = m;
        const float bu = beta2 * U[i];
        const float ad = fabsf(d) + eps_in;
        const float u = (bu >= ad || bu != bu) ? bu : ad;
        U[i] = u;
        P[i] = p + neg_step * (m / (u + eps_out));
    }
    return 0;
}

FO_INLINE int fo_adamax_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_adamax_args c = *(const fo_adamax_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, c.g, c.m, c.u};
    FO_BLOCKED(lo, hi, st, 4, fo_adamax_body(&c, c.p, c.g, c.m, c.u, fo_b, fo_e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adadelta (the same rule in PyTorch and Keras).
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   s <- rho * s + (1 - rho) * d * d
 *   delta = (sqrt(a + eps) / sqrt(s + eps)) * d
 *   a <- rho * a + (1 - rho) * delta * delta
 *   p <- p + neg_lr * delta
 */
typedef struct {
    float *p; const float *g; float *sq; float *acc;
    float p_scale, gscale, wd, rho, one_m_rho, eps, neg_lr;
    int has_wd;
} fo_adadelta_args;

FO_INLINE int fo_adadelta_body(const fo_adadelta_args *a, float *restrict P,
                               const float *restrict G, float *restrict S,
                               float *restrict A, ptrdiff_t lo, ptrdiff_t hi) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd, rho = a->rho,
                one_m_rho = a->one_m_rho, eps = a->eps, neg_lr = a->neg_lr;
    const int has_wd = a->has_wd;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float s = rho * S[i] + one_m_rho * (d * d);
        S[i] = s;
        const float delta = (sqrtf(A[i] + eps) / sqrtf(s + eps)) * d;
        A[i] = rho * A[i] + one_m_rho * (delta * delta);
        P[i] = p + neg_lr * delta;
    }
    return 0;
}

FO_INLINE int fo_adadelta_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_adadelta_args c = *(const fo_adadelta_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, c.g, c.sq, c.acc};
    FO_BLOCKED(lo, hi, st, 4, fo_adadelta_body(&c, c.p, c.g, c.sq, c.acc, fo_b, fo_e));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Lion (Keras 3, optax and lion-pytorch agree).
 *
 *   p <- p * p_scale;  d = gscale * g [+ wd * p]
 *   c = beta1 * m + (1 - beta1) * d
 *   p <- p + neg_lr * sign(c)          (sign(0) = 0, sign(nan) = nan)
 *   m <- beta2 * m + (1 - beta2) * d
 */
typedef struct {
    float *p; const float *g; float *m;
    float p_scale, gscale, wd, beta1, one_m_beta1, beta2, one_m_beta2, neg_lr;
    int has_wd;
} fo_lion_args;

FO_INLINE int fo_lion_body(const fo_lion_args *a, float *restrict P,
                           const float *restrict G, float *restrict M,
                           ptrdiff_t lo, ptrdiff_t hi) {
    const float p_scale = a->p_scale, gscale = a->gscale, wd = a->wd, beta1 = a->beta1,
                one_m_beta1 = a->one_m_beta1, beta2 = a->beta2,
                one_m_beta2 = a->one_m_beta2, neg_lr = a->neg_lr;
    const int has_wd = a->has_wd;
    for (ptrdiff_t i = lo; i < hi; i++) {
        const float g = G[i];
        const float p = P[i] * p_scale;
        float d = gscale * g;
        d = has_wd ? d + wd * p : d;
        const float c = M[i] * beta1 + d * one_m_beta1;
        /* sign as two selects and a nan select: a nested select became a branch */
        float s = (c > 0.0f ? 1.0f : 0.0f) - (c < 0.0f ? 1.0f : 0.0f);
        s = c != c ? c : s;
        P[i] = p + neg_lr * s;
        M[i] = M[i] * beta2 + d * one_m_beta2;
    }
    return 0;
}

FO_INLINE int fo_lion_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_lion_args c = *(const fo_lion_args *)v; /* see FO_BLOCKED */
    const float *st[] = {c.p, c.g, c.m};
    FO_BLOCKED(lo, hi, st, 3, fo_lion_body(&c, c.p, c.g, c.m, fo_b, fo_e));
    return 0;
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
/* Whether any element is nan or inf; x in format fmt (FO_F32, FO_F16, FO_BF16). */
typedef struct { const void *x; int fmt; } fo_nonfinite_args;

FO_INLINE int fo_nonfinite_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    const fo_nonfinite_args *a = (const fo_nonfinite_args *)v;
    int bad = 0;
    if (a->fmt == FO_F32) {
        const float *restrict X = (const float *)a->x;
        for (ptrdiff_t i = lo; i < hi; i++) bad |= FO_NOT_FINITE(X[i]);
    } else {
        /* all exponent bits set: inf or nan */
        const uint16_t *restrict X = (const uint16_t *)a->x;
        const uint16_t e = a->fmt == FO_F16 ? 0x7c00u : 0x7f80u;
        for (ptrdiff_t i = lo; i < hi; i++) bad |= (X[i] & e) == e;
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* Softmax cross-entropy and its gradient, rows [lo, hi) of an (n, C) batch.
 *
 * Per row i (target t = keep * onehot(label) + smooth, or keep * T_i + smooth):
 *   m = max_c z_c (a nan anywhere makes m nan);  e_c = exp(z_c - m)
 *   S = sum_c e_c (double, in column order);  lse = m + log(S)
 *   loss_i = sum_c t_c (lse - z_c)     (sparse: lse - keep z_label - smooth sum z)
 *   grad_c = (e_c (sum_c t_c / S) - t_c) * scale
 *
 * With ten classes a row is too short for vectors, so rows are the vector
 * lanes: a block of up to FO_XENT_ROWS rows is transposed into `zt`
 * (column c of the block is zt[c*nr .. c*nr + nr)), every step then runs as
 * a contiguous loop over the rows of one column, and the gradient is written
 * back row-major.  Each row's sums still run over its classes in order, so
 * the results do not depend on the block size or the instruction set.
 * Rows whose label is `ignore` give loss 0 and a zero gradient.  The losses
 * are added to `total` in row order, in double.  Returns -1 if a row longer
 * than FO_XENT_BLOCK cannot get its scratch memory.
 */
#ifndef FO_XENT_BLOCK
#define FO_XENT_BLOCK 2048 /* floats of logits per block */
#endif
#define FO_XENT_ROWS 256

typedef struct {
    const float *z; const long long *label; const float *target;
    float *grad; double *row_loss;
    ptrdiff_t classes; long long ignore;
    double keep, smooth, scale;
    double total;
} fo_xent_args;

/* e^x rounded to float, for x <= 0, -inf or nan (returned as a quiet nan).
 * Evaluated in double: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of
 * ln2), e^r by its Taylor polynomial of degree 10 (truncation below 3e-13
 * relative), then scaled by 2^k.  The error before the one rounding to float
 * is under 1e-12 relative, so the result is the correctly rounded float
 * except within 1e-12 of a half-way point: checked against (float)exp(x)
 * over all 1,120,927,745 floats in [-104, 0], 19 differ, by 1 ulp.  (Degree
 * 7 was faster, but 586,157 differed.)  Only IEEE +, *, conversions and
 * integer operations on the bits: every SIMD variant gives the same bits.
 * x < -104 gives 0 (e^-104 is below half the smallest subnormal float).  The
 * clamp and the nan test are done on the bits with unsigned min and integer
 * compares, which the compiler vectorises (a float select became a branch). */
FO_INLINE float fo_exp_nonpos(float xf) {
    uint32_t u = fo_to_bits(xf);
    const uint32_t nan_bits = (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : 0u;
    u = u < 0xc2d00000u ? u : 0xc2d00000u; /* below -104 (sign bit set) -> -104 */
    const double x = (double)fo_from_bits(u);
    const double shifter = 0x1.8p52; /* adding it rounds to an integer */
    const double kd_s = x * 0x1.71547652b82fep0 + shifter; /* x / ln2 */
    const double kd = kd_s - shifter;
    const double r = (x - kd * 0x1.62e42fee00000p-1) - kd * 0x1.a39ef35793c76p-33;
    double p = 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k from k's bits in the low mantissa of kd_s; k is in [-150, 0] */
    uint64_t kbits;
    memcpy(&kbits, &kd_s, sizeof kbits);
    const uint64_t sbits = (kbits + 1023u) << 52;
    double two_k;
    memcpy(&two_k, &sbits, sizeof two_k);
    return fo_from_bits(fo_to_bits((float)(p * two_k)) | nan_bits);
}

/* log(s) for s >= 1 (finite) or nan, in double, for the sums of
 * exponentials (the row's largest term is e^0 = 1).  s = 2^k f with f in
 * [sqrt(1/2), sqrt(2)); log f = 2 atanh(w), w = (f - 1) / (f + 1), |w| <
 * 0.172, by its series to w^21 (truncation below 1e-17); k ln2 is added in
 * two parts.  About 1 ulp; vectorises (libm's log is a call per row). */
FO_INLINE double fo_log_ge1(double s) {
    uint64_t u;
    memcpy(&u, &s, sizeof u);
    const uint64_t t = u - 0x3fe6a09e667f3bcdULL; /* bits of sqrt(1/2) */
    const uint64_t kb = (t >> 52) | 0x4330000000000000ULL; /* 2^52 + k, k >= 0 */
    const uint64_t fb = u - (t & 0xfff0000000000000ULL);
    double f;
    memcpy(&f, &fb, sizeof f);
    const double w = (f - 1.0) / (f + 1.0);
    const double w2 = w * w;
    double p = 2.0 / 21.0;
    p = p * w2 + 2.0 / 19.0;
    p = p * w2 + 2.0 / 17.0;
    p = p * w2 + 2.0 / 15.0;
    p = p * w2 + 2.0 / 13.0;
    p = p * w2 + 2.0 / 11.0;
    p = p * w2 + 2.0 / 9.0;
    p = p * w2 + 2.0 / 7.0;
    p = p * w2 + 2.0 / 5.0;
    p = p * w2 + 2.0 / 3.0;
    double kd;
    memcpy(&kd, &kb, sizeof kd);
    kd -= 0x1p52;
    const double logf_ = 2.0 * w + w * (w2 * p);
    /* (s - s) is 0, or nan for a nan s, whose bits gave a finite f */
    return (kd * 0x1.62e42fee00000p-1 + (logf_ + kd * 0x1.a39ef35793c76p-33)) + (s - s);
}

FO_INLINE int fo_xent_dispatch(const void *v, ptrdiff_t lo, ptrdiff_t hi) {
    fo_xent_args *a = (fo_xent_args *)v;
    const ptrdiff_t C = a->classes;
    ptrdiff_t R = FO_XENT_BLOCK / C;
    R = R < 1 ? 1 : (R > FO_XENT_ROWS ? FO_XENT_ROWS : R);
    /* whole 16-row vectors: a block's leftover rows would run the scalar
     * remainder of every column loop */
    R = R >= 16 ? R & ~(ptrdiff_t)15 : R;
    const long long *restrict Y = a->label;
    const float *restrict T = a->target;
    float *restrict G = a->grad;
    double *restrict L = a->row_loss;
    const double keep = a->keep, smooth = a->smooth, scale = a->scale;
    const long long ignore = a->ignore;
    float stack_buf[2 * FO_XENT_BLOCK];
    float *heap = NULL, *zt = stack_buf;
    if (R * C > FO_XENT_BLOCK) { /* a single row longer than a block */
        heap = (float *)malloc(2 * (size_t)C * sizeof(float));
        if (heap == NULL) return -1;
        zt = heap;
    }
    float *restrict et = zt + R * C;
    float m[FO_XENT_ROWS];
    int nan[FO_XENT_ROWS], counted[FO_XENT_ROWS];
    long long lab[FO_XENT_ROWS];
    double sum[FO_XENT_ROWS], lse[FO_XENT_ROWS], aux[FO_XENT_ROWS], loss[FO_XENT_ROWS];
    double labd[FO_XENT_ROWS];
    double total = a->total;
    for (ptrdiff_t r0 = lo; r0 < hi; r0 += R) {
        const ptrdiff_t nr = hi - r0 < R ? hi - r0 : R;
        const float *restrict Z = a->z + r0 * C;
        for (ptrdiff_t c = 0; c < C; c++) {
            FO_SIMD
            for (ptrdiff_t r = 0; r < nr; r++) zt[c * nr + r] = Z[r * C + c];
        }
        /* the row max: maxss is exact whatever the order; nan is tracked on
         * its own (a select that also tested for nan became a branch) */
        for (ptrdiff_t r = 0; r < nr; r++) {
            m[r] = zt[r];
            nan[r] = 0;
            sum[r] = 0.0;
        }
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t r = 0; r < nr; r++) {
                const float x = zt[c * nr + r];
                m[r] = x > m[r] ? x : m[r];
                nan[r] |= x != x;
            }
        for (ptrdiff_t r = 0; r < nr; r++) m[r] = nan[r] ? NAN : m[r];
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t r = 0; r < nr; r++) {
                const float e = fo_exp_nonpos(zt[c * nr + r] - m[r]);
                et[c * nr + r] = e;
                sum[r] += e;
            }
        for (ptrdiff_t r = 0; r < nr; r++) lse[r] = m[r] + fo_log_ge1(sum[r]);
        if (Y) {
            /* aux: sum of the logits, needed with label smoothing */
            for (ptrdiff_t r = 0; r < nr; r++) aux[r] = 0.0;
            if (smooth != 0.0)
                for (ptrdiff_t c = 0; c < C; c++)
                    for (ptrdiff_t r = 0; r < nr; r++) aux[r] += zt[c * nr + r];
            for (ptrdiff_t r = 0; r < nr; r++) {
                const long long y = Y[r0 + r];
                counted[r] = y != ignore;
                lab[r] = counted[r] ? y : 0;
                labd[r] = (double)y; /* compared with c as a double, which vectorises */
            }
            FO_SIMD
            for (ptrdiff_t r = 0; r < nr; r++)
                loss[r] = lse[r] - keep * Z[r * C + lab[r]] - smooth * aux[r];
            for (ptrdiff_t r = 0; r < nr; r++) aux[r] = 1.0 / sum[r]; /* factor on e */
        } else {
            /* aux: sum of the targets */
            for (ptrdiff_t r = 0; r < nr; r++) {
                aux[r] = 0.0;
                loss[r] = 0.0;
                counted[r] = 1;
                lab[r] = -1;
            }
            const float *restrict Tb = T + r0 * C;
            for (ptrdiff_t c = 0; c < C; c++)
                for (ptrdiff_t r = 0; r < nr; r++) {
                    const double t = keep * Tb[r * C + c] + smooth;
                    aux[r] += t;
                    loss[r] += t * (lse[r] - zt[c * nr + r]);
                }
            for (ptrdiff_t r = 0; r < nr; r++) aux[r] = 1.0 / sum[r] * aux[r];
        }
        if (G) {
            /* written back row-major: a strided store, which the cost model
             * declines unless told (omp simd) */
            float *restrict Gb = G + r0 * C;
            const float *restrict Tb = T ? T + r0 * C : NULL;
            for (ptrdiff_t c = 0; c < C; c++) {
                const double cd = (double)c;
                if (Tb) {
                    FO_SIMD
                    for (ptrdiff_t r = 0; r < nr; r++) {
                        const double t = keep * Tb[r * C + c] + smooth;
                        Gb[r * C + c] = (float)((et[c * nr + r] * aux[r] - t) * scale);
                    }
                } else {
                    FO_SIMD
                    for (ptrdiff_t r = 0; r < nr; r++) {
                        /* smooth + keep at the label, smooth elsewhere */
                        const double t = labd[r] == cd ? smooth + keep : smooth;
                        Gb[r * C + c] = (float)((et[c * nr + r] * aux[r] - t) * scale);
                    }
                }
            }
            for (ptrdiff_t r = 0; r < nr; r++)
                if (!counted[r]) memset(Gb + r * C, 0, (size_t)C * sizeof(float));
        }
        for (ptrdiff_t r = 0; r < nr; r++) {
            loss[r] = counted[r] ? loss[r] : 0.0;
            total += loss[r];
        }
        if (L)
            for (ptrdiff_t r = 0; r < nr; r++) L[r0 + r] = loss[r];
    }
    free(heap);
    a->total = total;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One function per (rule, instruction set).                                 */

/* FO_VARIANTS_CALL(rule, CALL): the variants of a rule whose dispatch is
 * CALL, an expression over a, lo, hi and fo_isa (the variant, FO_ISA_*: a
 * dispatch that uses instructions beyond the baseline's, F16C, takes it).
 * The AVX2 and AVX-512 variants may use F16C: every CPU with AVX2 has it,
 * and fo_best_simd checks.  The AVX-512 variant also takes VL, BW and DQ
 * (every AVX-512 CPU since Skylake-SP, AMD's included): without them GCC
 * ran the 16-bit conversions of the low-precision loops in 256-bit VEX
 * code, in 16 registers with spills, slower than the AVX2 variant (Intel
 * Xeon model 207, bfloat16 Adam state in cache: 1.2 ns an element against
 * 0.75). */
#if FO_X86
#define FO_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,f16c,prefer-vector-width=512")))
#define FO_TARGET_AVX2 __attribute__((target("avx2,f16c")))
#define FO_VARIANTS_CALL(rule, CALL)                                         \
    static FO_TARGET_AVX512 int fo_##rule##_avx512(const void *a,           \
                                                   ptrdiff_t lo, ptrdiff_t hi) \
    { const int fo_isa = FO_ISA_AVX512; (void)fo_isa; return CALL; }        \
    static FO_TARGET_AVX2 int fo_##rule##_avx2(const void *a, ptrdiff_t lo,  \
                                               ptrdiff_t hi)                 \
    { const int fo_isa = FO_ISA_AVX2; (void)fo_isa; return CALL; }          \
    static int fo_##rule##_baseline(const void *a, ptrdiff_t lo, ptrdiff_t hi) \
    { const int fo_isa = FO_ISA_BASELINE; (void)fo_isa; return CALL; }
#else
#define FO_VARIANTS_CALL(rule, CALL)                                         \
    static int fo_##rule##_baseline(const void *a, ptrdiff_t lo, ptrdiff_t hi) \
    { const int fo_isa = FO_ISA_BASELINE; (void)fo_isa; return CALL; }
#endif
#define FO_VARIANTS(rule) FO_VARIANTS_CALL(rule, fo_##rule##_dispatch(a, lo, hi))

FO_VARIANTS(sgd)
FO_VARIANTS(adagrad)
FO_VARIANTS(rmsprop)
FO_VARIANTS_CALL(adam, fo_adam_dispatch(a, lo, hi, fo_isa))
FO_VARIANTS(nadam)
FO_VARIANTS(adamax)
FO_VARIANTS(adadelta)
FO_VARIANTS(lion)
FO_VARIANTS(sumsq)
FO_VARIANTS(nonfinite)
FO_VARIANTS(xent)

typedef struct {
    const char *name;
    fo_kernel_fn sgd, adagrad, rmsprop, adam, nadam, adamax, adadelta, lion, sumsq, nonfinite,
        xent;
} fo_table;

static const fo_table fo_tables[] = {
    {"baseline", fo_sgd_baseline, fo_adagrad_baseline, fo_rmsprop_baseline,
     fo_adam_baseline, fo_nadam_baseline, fo_adamax_baseline, fo_adadelta_baseline,
     fo_lion_baseline, fo_sumsq_baseline, fo_nonfinite_baseline, fo_xent_baseline},
#if FO_X86
    {"avx2", fo_sgd_avx2, fo_adagrad_avx2, fo_rmsprop_avx2, fo_adam_avx2, fo_nadam_avx2,
     fo_adamax_avx2, fo_adadelta_avx2, fo_lion_avx2, fo_sumsq_avx2, fo_nonfinite_avx2,
     fo_xent_avx2},
    {"avx512f", fo_sgd_avx512, fo_adagrad_avx512, fo_rmsprop_avx512, fo_adam_avx512,
     fo_nadam_avx512, fo_adamax_avx512, fo_adadelta_avx512, fo_lion_avx512,
     fo_sumsq_avx512, fo_nonfinite_avx512, fo_xent_avx512},
#endif
};
#define FO_N_TABLES ((int)(sizeof(fo_tables) / sizeof(fo_tables[0])))

static const fo_table *fo_active = &fo_tables[0];

/* Index of the best table this CPU can run. */
static int fo_best_simd(void) {
#if FO_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("f16c")) return 0; /* see FO_VARIANTS_CALL */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return FO_ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return FO_ISA_AVX2;
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
 * subnormals, which are far slower on x86.  FTZ|DAZ are restored after. */

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
            /* chunks of whole 64-byte lines so no two threads share one
             * (32 elements: of 16-bit buffers too, such as Adam's copy) */
            const ptrdiff_t chunk = ((n + nt - 1) / nt + 31) & ~(ptrdiff_t)31;
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
