/*
 * hist.h: the log-linear latency histogram of the bench tools
 * (waitroom-loadgen, waitroom-openloop), in whatever unit the caller records.
 *
 * Values below 2 * WR_HIST_SUB have a bucket each; above, a value whose top
 * bit is m falls in one of WR_HIST_SUB buckets for the power of two
 * [2^m, 2^(m+1)), so a bucket is at most 1/128 (0.8 %) of the values in it.
 * Values from 2^WR_HIST_TOP_BIT up land in the last bucket (the exact
 * maximum is kept apart). Fixed size and plain data, so a process can ship
 * one to another as bytes.
 */
#ifndef WR_BENCH_HIST_H
#define WR_BENCH_HIST_H

#include <stdint.h>

#define WR_HIST_SUB_BITS 7
#define WR_HIST_SUB (1u << WR_HIST_SUB_BITS)
#define WR_HIST_TOP_BIT 42
#define WR_HIST_BUCKETS ((WR_HIST_TOP_BIT - WR_HIST_SUB_BITS + 1) * WR_HIST_SUB)

typedef struct wr_hist_s {
    uint64_t count;
    uint64_t max;
    double sum;
    uint64_t b[WR_HIST_BUCKETS];
} wr_hist_t;

void wr_hist_add(wr_hist_t *h, uint64_t v);
void wr_hist_merge(wr_hist_t *dst, const wr_hist_t *src);
/* The value at percentile p (0..100): its bucket's highest value (as HdrHistogram reports), never above the maximum. */
uint64_t wr_hist_pct(const wr_hist_t *h, double p);
double wr_hist_mean(const wr_hist_t *h);

#endif
