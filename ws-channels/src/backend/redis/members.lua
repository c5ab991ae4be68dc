-- ARGV: limit, ttl ms. Reply: status, opts, reaped, total, {info, role}...
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'not_found', '', {}} end
local reaped = reap(now_ms())
if #reaped > 0 then settle(cjson.decode(optsj), tonumber(ARGV[2])) end
local total = redis.call('ZCARD', KEYS[2])
local limit = tonumber(ARGV[1])
local out = {}
if limit > 0 then
  for _, session in ipairs(redis.call('ZRANGE', KEYS[2], 0, limit - 1)) do
    local who = redis.call('HGET', KEYS[5], session)
    local info = redis.call('HGET', KEYS[4], session)
    if who and info then
      local _, role = split_who(who)
      out[#out + 1] = info
      out[#out + 1] = role
    end
  end
end
return {'ok', optsj, reaped, total, out}
