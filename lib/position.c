/*
 * position.c: position and estimated-wait arithmetic (see position.h).
 * Integer arithmetic only, with the products bounded so that they cannot
 * overflow for any value the config accepts.
 */
#include "position.h"

int64_t wr_position(int64_t q, int64_t serving)
{
    if (q <= serving)
        return 0;
    return q - serving;
}

int64_t wr_estimated_wait(int64_t position, const wr_room_t *room)
{
    /* Users admitted per minute through each inlet; per-minute keeps the
     * turnover rate an integer ratio: total * 60000 / session_ms. */
    int64_t by_rate_num = room->new_users_per_minute, by_rate_den = 60; /* users per second = num / den */
    int64_t by_turn_num = room->total_active_users * 1000, by_turn_den = room->session_duration_ms;
    int64_t num, den;

    if (position <= 0)
        return 0;
    /* Pick the slower inlet: compare num/den fractions by cross-multiplying
     * (bounded: 1e8 * 864e5 and 1e10 * 60 fit easily in 64 bits). */
    if (by_rate_num * by_turn_den <= by_turn_num * by_rate_den) {
        num = by_rate_num;
        den = by_rate_den;
    } else {
        num = by_turn_num;
        den = by_turn_den;
    }
    /* wait = ceil(position / (num / den)) = ceil(position * den / num). A
     * position is at most about 2^53 in practice; guard the product anyway. */
    if (position > INT64_MAX / den)
        return INT64_MAX / num;
    return (position * den + num - 1) / num;
}
