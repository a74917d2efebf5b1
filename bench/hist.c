/*
 * hist.c: the bench tools' log-linear histogram (see hist.h).
 */
#include "hist.h"

#include <math.h>

static unsigned hist_index(uint64_t v)
{
    unsigned shift;
    if (v >= (uint64_t)1 << WR_HIST_TOP_BIT)
        v = ((uint64_t)1 << WR_HIST_TOP_BIT) - 1;
    if (v < 2 * WR_HIST_SUB)
        return (unsigned)v;
    shift = 63u - (unsigned)__builtin_clzll(v) - WR_HIST_SUB_BITS;
    return (shift + 1) * WR_HIST_SUB + (unsigned)((v >> shift) - WR_HIST_SUB);
}

static uint64_t hist_high(unsigned i)
{
    unsigned shift;
    uint64_t sub;
    if (i < 2 * WR_HIST_SUB)
        return i;
    shift = i / WR_HIST_SUB - 1;
    sub = i % WR_HIST_SUB + WR_HIST_SUB;
    return ((sub + 1) << shift) - 1;
}

void wr_hist_add(wr_hist_t *h, uint64_t v)
{
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    h->b[hist_index(v)]++;
}

void wr_hist_merge(wr_hist_t *dst, const wr_hist_t *src)
{
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    for (unsigned i = 0; i < WR_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
}

uint64_t wr_hist_pct(const wr_hist_t *h, double p)
{
    uint64_t want, seen = 0;
    if (h->count == 0)
        return 0;
    want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < WR_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double wr_hist_mean(const wr_hist_t *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
