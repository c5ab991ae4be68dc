-- Appends to history and publishes in one step, so every node sees
-- offsets in order. KEYS: meta, hist. ARGV: publication JSON, size,
-- ttl ms, Redis channel. Reply: status, offset, epoch
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local now = now_ms()
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], top .. '-0',
  'x', now + tonumber(ARGV[3]), 'p', ARGV[1])
inherit(2)
redis.call('PUBLISH', ARGV[4],
  '{"o":' .. top .. ',"e":"' .. epoch .. '","p":' .. ARGV[1] .. '}')
return {'ok', top, epoch}
