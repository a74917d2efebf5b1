/*
 * store.c: the Redis key layout and the Lua scripts.
 *
 * Everything that must survive a restart of a gateway or the worker lives in
 * Redis, under keys that all share the room's hash tag, so that one room can
 * live on any one Redis server (or Cluster slot) and every script touches one
 * slot:
 *
 *   wr:{R}:seq      string  next queue number (INCR at join)
 *   wr:{R}:queue    zset    WAITING users: member uid, score queue number
 *   wr:{R}:serving  string  queue number of the last user admitted
 *   wr:{R}:active   zset    ACTIVE users: member uid, score session end (ms)
 *   wr:{R}:revoked  zset    sessions ended early: member uid, score the
 *                           session end it had (kept until then, so that a
 *                           gateway that reloads its view still refuses it)
 *   wr:{R}:credit   hash    credit (float, users) and at (ms): the token
 *                           bucket behind new_users_per_minute
 *   wr:{R}:deadline zset    WAITING users: member uid, score the time (ms) by
 *                           which they must show a sign of life (a push
 *                           connection, a poll) or lose their place
 *   wr:{R}:events   channel one JSON message per tick that admitted or
 *                           dropped someone, and one per early end
 *
 * Abandonment. A user who joins gets a deadline of now + abandon_grace.
 * Gateways push it forward in batches (the touch script): while the user
 * holds a push connection, when it closes, and when the user polls. The
 * admit script drops users whose deadline has passed (a bounded number per
 * tick), so leavers do not stall the line, and records them as tombstones
 * in revoked until their queue token expires, so that every gateway tells a
 * returning leaver at once that the place is gone.
 *
 * Position. A user's place is the queue number q handed out at join; the
 * worker admits in q order and records the last admitted q as serving, so a
 * waiting user's position is q - serving without any rank query, and one
 * integer per room tells every gateway every waiting user's position. The
 * position can only fall: serving never decreases.
 *
 * Time. The scripts read the clock with Redis's TIME, so that every worker
 * and gateway agrees on when a session ends whatever their own clocks say.
 *
 * Cost. The admission script's work is proportional to the users admitted
 * and expired in that tick: ZPOPMIN, ZREMRANGEBYSCORE and ZCARD never walk the
 * waiting users.
 */
#include "store.h"

#include <openssl/sha.h>
#include <stdio.h>

void wr_store_room_keys(const char *room, wr_room_keys_t *k)
{
    snprintf(k->queue, sizeof(k->queue), "wr:{%s}:queue", room);
    snprintf(k->active, sizeof(k->active), "wr:{%s}:active", room);
    snprintf(k->seq, sizeof(k->seq), "wr:{%s}:seq", room);
    snprintf(k->serving, sizeof(k->serving), "wr:{%s}:serving", room);
    snprintf(k->revoked, sizeof(k->revoked), "wr:{%s}:revoked", room);
    snprintf(k->credit, sizeof(k->credit), "wr:{%s}:credit", room);
    snprintf(k->events, sizeof(k->events), "wr:{%s}:events", room);
    snprintf(k->deadline, sizeof(k->deadline), "wr:{%s}:deadline", room);
}

/* Milliseconds from Redis's clock; every script that needs "now" uses it. */
#define LUA_NOW                                                                                                            \
    "local t = redis.call('TIME')\n"                                                                                       \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/*
 * KEYS: queue seq serving deadline
 * ARGV: uid abandon_grace_ms
 * A uid already in line keeps its number: joining is idempotent.
 */
wr_script_t wr_script_join = {"join",
                              "local q = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
                              "if not q then\n"
                              "  q = redis.call('INCR', KEYS[2])\n"
                              "  redis.call('ZADD', KEYS[1], q, ARGV[1])\n" LUA_NOW
                              "  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])\n"
                              "end\n"
                              "return {tonumber(q), tonumber(redis.call('GET', KEYS[3]) or '0')}\n",
                              4};

/*
 * KEYS: deadline
 * ARGV: extend_ms uid...
 * Sets each listed user's deadline to now + extend_ms, but only for users
 * still waiting (XX: an admitted or dropped user is not brought back).
 */
wr_script_t wr_script_touch = {"touch",
                               LUA_NOW "local ends = now + tonumber(ARGV[1])\n"
                                       "local args, n = {}, 0\n"
                                       "for i = 2, #ARGV do\n"
                                       "  args[#args + 1] = ends\n"
                                       "  args[#args + 1] = ARGV[i]\n"
                                       "  if #args >= 1000 then n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(args)); args = {} end\n"
                                       "end\n"
                                       "if #args > 0 then n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(args)) end\n"
                                       "return n\n",
                               1};

/*
 * KEYS: queue active serving
 * ARGV: uid
 */
wr_script_t wr_script_status = {"status",
                                LUA_NOW "local serving = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
                                        "local e = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
                                        "if e and tonumber(e) > now then return {2, tonumber(e), serving} end\n"
                                        "local q = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
                                        "if q then return {1, tonumber(q), serving} end\n"
                                        "return {0, 0, serving}\n",
                                3};

/*
 * KEYS: queue active serving revoked credit events deadline
 * ARGV: total_active_users new_users_per_minute session_ms tombstone_ms max_drop
 *
 * One tick for one room: end the sessions whose time is up (their slots free
 * at once); drop up to max_drop waiting users whose liveness deadline has
 * passed (tombstoned in revoked for tombstone_ms, the queue token's
 * lifetime); then admit up to min(credit, total_active_users - active) users
 * in queue-number order. The credit is a token bucket filled at
 * new_users_per_minute from the time elapsed since the previous tick of any
 * worker, and capped at one second's worth (at least one user), so that two
 * workers running side by side admit no faster than one and a stalled worker
 * does not release a burst when it returns. The cap on active users is exact:
 * this script is the only place that adds to the active set and it checks
 * ZCARD in the same atomic step.
 */
wr_script_t wr_script_admit = {
    "admit",
    LUA_NOW "local limit = tonumber(ARGV[1])\n"
            "local rate = tonumber(ARGV[2]) / 60000\n"
            "local session = tonumber(ARGV[3])\n"
            "local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
            "redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)\n"
            "local dropped = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))\n"
            "local until_ms = now + tonumber(ARGV[4])\n"
            "for i = 1, #dropped, 500 do\n"
            "  local chunk = {unpack(dropped, i, math.min(i + 499, #dropped))}\n"
            "  redis.call('ZREM', KEYS[1], unpack(chunk))\n"
            "  redis.call('ZREM', KEYS[7], unpack(chunk))\n"
            "  local t = {}\n"
            "  for j = 1, #chunk do t[#t + 1] = until_ms; t[#t + 1] = chunk[j] end\n"
            "  redis.call('ZADD', KEYS[4], unpack(t))\n"
            "end\n"
            "local active = redis.call('ZCARD', KEYS[2])\n"
            "local c = redis.call('HMGET', KEYS[5], 'credit', 'at')\n"
            "local credit = tonumber(c[1]) or 0\n"
            "local at = tonumber(c[2]) or now\n"
            "local elapsed = now - at\n"
            "if elapsed < 0 then elapsed = 0 end\n"
            "credit = credit + elapsed * rate\n"
            "local cap = math.max(1, rate * 1000)\n"
            "if credit > cap then credit = cap end\n"
            "local n = math.floor(credit)\n"
            "if n > limit - active then n = limit - active end\n"
            "local serving = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
            "local admitted = {}\n"
            "local ends = now + session\n"
            "if n > 0 then\n"
            "  local popped = redis.call('ZPOPMIN', KEYS[1], n)\n"
            "  local args = {}\n"
            "  for i = 1, #popped, 2 do\n"
            "    admitted[#admitted + 1] = popped[i]\n"
            "    local q = tonumber(popped[i + 1])\n"
            "    if q > serving then serving = q end\n"
            "    args[#args + 1] = ends\n"
            "    args[#args + 1] = popped[i]\n"
            "    if #args >= 1000 then redis.call('ZADD', KEYS[2], unpack(args)); args = {} end\n"
            "  end\n"
            "  if #args > 0 then redis.call('ZADD', KEYS[2], unpack(args)) end\n"
            "  for i = 1, #admitted, 500 do\n"
            "    redis.call('ZREM', KEYS[7], unpack(admitted, i, math.min(i + 499, #admitted)))\n"
            "  end\n"
            "  if #admitted > 0 then\n"
            "    credit = credit - #admitted\n"
            "    redis.call('SET', KEYS[3], serving)\n"
            "  end\n"
            "end\n"
            "if #admitted > 0 or #dropped > 0 then\n"
            "  local msg = {serving = serving, ends = ends, ts = now}\n"
            "  if #admitted > 0 then msg.admitted = admitted end\n"
            "  if #dropped > 0 then msg.dropped = dropped; msg.dropped_until = until_ms end\n"
            "  redis.call('PUBLISH', KEYS[6], cjson.encode(msg))\n"
            "end\n"
            "redis.call('HSET', KEYS[5], 'credit', tostring(credit), 'at', now)\n"
            "return {#admitted, expired, active + #admitted, serving, #dropped}\n",
    7};

/*
 * KEYS: queue active revoked events deadline
 * ARGV: uid tombstone_ms
 * Ending a session frees its slot at once and leaves a tombstone until the
 * session would have ended; leaving the line leaves one for tombstone_ms
 * (the queue token's lifetime). Either is announced on the room's channel,
 * so that every gateway refuses the user from then on.
 */
wr_script_t wr_script_leave = {
    "leave",
    LUA_NOW "local left = redis.call('ZREM', KEYS[1], ARGV[1])\n"
            "redis.call('ZREM', KEYS[5], ARGV[1])\n"
            "local e = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
            "if e then\n"
            "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
            "  redis.call('ZADD', KEYS[3], e, ARGV[1])\n"
            "  redis.call('PUBLISH', KEYS[4], cjson.encode({revoked = {ARGV[1]}, ends = tonumber(e), ts = now}))\n"
            "  return 2\n"
            "end\n"
            "if left == 1 then\n"
            "  local until_ms = now + tonumber(ARGV[2])\n"
            "  redis.call('ZADD', KEYS[3], until_ms, ARGV[1])\n"
            "  redis.call('PUBLISH', KEYS[4], cjson.encode({dropped = {ARGV[1]}, dropped_until = until_ms, ts = now}))\n"
            "end\n"
            "return left\n",
    5};

/*
 * KEYS: active revoked serving
 * ARGV: none
 * Read in one atomic step so that the three parts agree with each other.
 */
wr_script_t wr_script_snapshot = {"snapshot",
                                  LUA_NOW "return {tonumber(redis.call('GET', KEYS[3]) or '0'), now,\n"
                                          "  redis.call('ZRANGEBYSCORE', KEYS[1], now + 1, '+inf', 'WITHSCORES'),\n"
                                          "  redis.call('ZRANGEBYSCORE', KEYS[2], now + 1, '+inf', 'WITHSCORES')}\n",
                                  3};

wr_script_t *const wr_scripts[] = {&wr_script_join,  &wr_script_touch,   &wr_script_status,
                                   &wr_script_admit, &wr_script_leave,   &wr_script_snapshot};
const size_t wr_num_scripts = WR_ARRAY_SIZE(wr_scripts);

void wr_store_init(void)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < wr_num_scripts; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)wr_scripts[i]->source, strlen(wr_scripts[i]->source), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++) {
            wr_scripts[i]->sha[2 * j] = hex[md[j] >> 4];
            wr_scripts[i]->sha[2 * j + 1] = hex[md[j] & 15];
        }
        wr_scripts[i]->sha[40] = '\0';
    }
}
