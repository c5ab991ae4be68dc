-- ARGV: session, ttl ms. Reply: status, opts, reaped members
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {'ok', '', {}} end
local reaped = reap(now_ms())
remove(ARGV[1])
settle(cjson.decode(optsj), tonumber(ARGV[2]))
return {'ok', optsj, reaped}
