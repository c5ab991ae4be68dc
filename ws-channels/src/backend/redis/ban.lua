-- ARGV: user name, duration ms (0: until unbanned), most bans, ttl ms.
-- Reply: status, opts, reaped
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'not_found', '', {}} end
local now = now_ms()
local reaped = reap(now)
local name = ARGV[1]
if redis.call('HEXISTS', KEYS[7], name) == 0
   and redis.call('HLEN', KEYS[7]) >= tonumber(ARGV[3]) then
  return {'limit', optsj, reaped}
end
local ban_until = 0
if ARGV[2] ~= '0' then ban_until = now + tonumber(ARGV[2]) end
redis.call('HSET', KEYS[7], name, ban_until)
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  local _, _, user = split_who(all[i + 1])
  if user == '=' .. name then remove(all[i]) end
end
settle(cjson.decode(optsj), tonumber(ARGV[4]))
inherit(7)
return {'ok', optsj, reaped}
