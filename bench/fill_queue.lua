-- fill_queue.lua: puts users in a room's line the way joins leave them, for
-- bench/admission.sh and bench/tick_cost.sh: user i gets queue number i and
-- the uid "%032x" of i; queue holds uid -> i, deadline holds uid -> now +
-- grace (Redis's clock, as the join script uses), and seq is set to the last
-- number handed out. ZADDs go 500 members at a time.
-- KEYS: queue deadline seq   ARGV: first last grace_ms seq
local t = redis.call("TIME"); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first, last, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for s = first, last, 500 do
  local q, d = {}, {}
  for i = s, math.min(s + 499, last) do
    local uid = string.format("%032x", i)
    q[#q + 1] = i; q[#q + 1] = uid
    d[#d + 1] = now + grace; d[#d + 1] = uid
  end
  redis.call("ZADD", KEYS[1], unpack(q)); redis.call("ZADD", KEYS[2], unpack(d))
end
redis.call("SET", KEYS[3], ARGV[4])
return 1
