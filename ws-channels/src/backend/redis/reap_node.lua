-- A node stopped beating: its members go. ARGV: node, ttl ms.
-- Reply: status, opts, reaped (expired ones and the node's)
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'gone', '', {}} end
local reaped = reap(now_ms())
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  if split_who(all[i + 1]) == ARGV[1] then
    local info = redis.call('HGET', KEYS[4], all[i])
    if info then reaped[#reaped + 1] = info end
    remove(all[i])
  end
end
settle(cjson.decode(optsj), tonumber(ARGV[2]))
return {'ok', optsj, reaped}
