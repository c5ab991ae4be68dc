-- ARGV: node, ttl ms, sessions...
-- Reply: status, opts, reaped members, the sessions not found
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'gone', '', {}, {}} end
local now = now_ms()
local ttl = tonumber(ARGV[2])
local reaped = reap(now)
local missing = {}
for i = 3, #ARGV do
  local who = redis.call('HGET', KEYS[5], ARGV[i])
  if who and split_who(who) == ARGV[1] then
    redis.call('ZADD', KEYS[3], 'XX', now + ttl, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
settle(cjson.decode(optsj), ttl)
return {'ok', optsj, reaped, missing}
