/*
 * bench/timing.h -- the clock and the median of the standalone C
 * measurements in bench/ (adam_floor.c, lowp_overlap.c).
 */
#ifndef FASTOPT_BENCH_TIMING_H
#define FASTOPT_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The median of t[0 .. n) (sorts t in place). */
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof(double), by_value);
    return t[n / 2];
}

#endif /* FASTOPT_BENCH_TIMING_H */
