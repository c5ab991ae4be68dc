-- ARGV: opts, session, info, node, user, ttl ms, epoch
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
-- Leftovers of an earlier channel of that name go with it.
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
local opts = cjson.decode(ARGV[1])
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'opts', ARGV[1], 'seq', 0, 'epoch', ARGV[7], 'top', 0, 'creator', ARGV[5], 'gepoch', 0)
add(ARGV[2], now, ttl, ARGV[3], ARGV[4], 'owner', ARGV[5])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[6], string.sub(ARGV[5], 2), 'owner') end
settle(opts, ttl)
return {'ok'}
