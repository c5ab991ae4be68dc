-- ARGV: session, info, node, user, ttl ms
-- Reply: status, opts, reaped members, role
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'not_found', '', {}} end
local opts = cjson.decode(optsj)
local now = now_ms()
local ttl = tonumber(ARGV[5])
local reaped = reap(now)
local user = ARGV[4]
if user ~= '' and banned(string.sub(user, 2), now) then
  settle(opts, ttl)
  return {'banned', optsj, reaped}
end
local who = redis.call('HGET', KEYS[5], ARGV[1])
if who then
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
  local _, role = split_who(who)
  settle(opts, ttl)
  return {'ok', optsj, reaped, role}
end
if redis.call('ZCARD', KEYS[2]) >= opts.max_participants then
  settle(opts, ttl)
  return {'full', optsj, reaped}
end
local role = 'participant'
if user ~= '' then
  role = redis.call('HGET', KEYS[6], string.sub(user, 2)) or 'participant'
end
add(ARGV[1], now, ttl, ARGV[2], ARGV[3], role, user)
settle(opts, ttl)
return {'ok', optsj, reaped, role}
