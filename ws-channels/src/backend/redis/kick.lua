-- ARGV: "s" and a session, or "u" and a user ("=" name), ttl ms, how
-- long a kicked session is remembered (ms).
-- Reply: status, opts, reaped, removed
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'not_found', '', {}} end
local now = now_ms()
local reaped = reap(now)
local until_ms = now + tonumber(ARGV[4])
local removed = 0
-- Kicked sessions are remembered, so that a node that missed the kick
-- (cut off from the broker) does not write them back.
local function kick(session)
  remove(session)
  redis.call('HSET', KEYS[9], session, until_ms)
  removed = removed + 1
end
local old = redis.call('HGETALL', KEYS[9])
for i = 1, #old, 2 do
  if tonumber(old[i + 1]) <= now then redis.call('HDEL', KEYS[9], old[i]) end
end
if ARGV[1] == 's' then
  if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then kick(ARGV[2]) end
else
  local all = redis.call('HGETALL', KEYS[5])
  for i = 1, #all, 2 do
    local _, _, user = split_who(all[i + 1])
    if user == ARGV[2] then kick(all[i]) end
  end
end
settle(cjson.decode(optsj), tonumber(ARGV[3]))
return {'ok', optsj, reaped, removed}
