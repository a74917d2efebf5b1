/*
 * position.h: a waiting user's position and estimated wait, derived from two
 * integers (the user's queue number and the room's serving counter) and the
 * room's admission settings. No Redis, no state: the gateway calls these for
 * every queued answer.
 */
#ifndef WR_POSITION_H
#define WR_POSITION_H

#include <stdint.h>

#include "config.h"

/*
 * The number of users ahead of a user with queue number q, plus one: 1 means
 * "next". Returns 0 when q <= serving, meaning the user is no longer waiting
 * (admitted, or passed over).
 */
int64_t wr_position(int64_t q, int64_t serving);

/*
 * Estimated seconds until a user at position is admitted: the position
 * divided by the slower of the two inlets, new_users_per_minute and the rate
 * at which full sessions turn over (total_active_users per session_duration),
 * rounded up. It assumes every admitted user stays for the whole session, so
 * it errs long rather than short. Returns 0 for position <= 0.
 */
int64_t wr_estimated_wait(int64_t position, const wr_room_t *room);

#endif
