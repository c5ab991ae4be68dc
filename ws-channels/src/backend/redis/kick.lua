-- ARGV: "s" and a session, or "u" and a user ("=" name), ttl ms.
-- Reply: status, opts, reaped, removed
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'not_found', '', {}} end
local reaped = reap(now_ms())
local removed = 0
if ARGV[1] == 's' then
  if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then
    remove(ARGV[2])
    removed = 1
  end
else
  local all = redis.call('HGETALL', KEYS[5])
  for i = 1, #all, 2 do
    local _, _, user = split_who(all[i + 1])
    if user == ARGV[2] then
      remove(all[i])
      removed = removed + 1
    end
  end
end
settle(cjson.decode(optsj), tonumber(ARGV[3]))
return {'ok', optsj, reaped, removed}
