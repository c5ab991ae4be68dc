-- Appends to history and publishes in one step, so every node sees
-- offsets in order. KEYS: meta, hist, and with an idempotency key the
-- key's record. ARGV: publication JSON, size, ttl ms, Redis channel, byte
-- budget, how long a key is remembered (ms), and for a group commit the
-- group epoch it is made in ('' for any other publication) and the
-- GroupInfo it came with ('' for none).
-- Reply: status ('ok', 'duplicate' or 'conflict'), offset (for a conflict,
-- the group's epoch), epoch
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local now = now_ms()
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if ARGV[7] ~= '' then
  -- 'gepoch' is set when the channel is created; a channel restored after
  -- Redis lost it has none, and the next commit sets it again.
  local at = redis.call('HGET', KEYS[1], 'gepoch')
  if at and tonumber(at) ~= tonumber(ARGV[7]) then
    return {'conflict', tonumber(at), epoch}
  end
  redis.call('HSET', KEYS[1], 'gepoch', tonumber(ARGV[7]) + 1)
  if ARGV[8] ~= '' then
    redis.call('HSET', KEYS[1], 'ginfo', (tonumber(ARGV[7]) + 1) .. ' ' .. ARGV[8])
  end
end
if KEYS[3] then
  -- Published with this key already (in this epoch): nothing again.
  local first = redis.call('GET', KEYS[3])
  if first then
    local offset, of_epoch = string.match(first, '^(%d+) (.*)$')
    if of_epoch == epoch then return {'duplicate', tonumber(offset), epoch} end
  end
end
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
local bytes = #ARGV[1]
redis.call('XADD', KEYS[2], top .. '-0', 'x', now + tonumber(ARGV[3]), 'p', ARGV[1], 'n', bytes)
-- The history keeps at most `size` entries and `budget` bytes of them,
-- the oldest going first; 'hbytes' in meta counts what it holds.
local held = redis.call('HINCRBY', KEYS[1], 'hbytes', bytes)
local size, budget = tonumber(ARGV[2]), tonumber(ARGV[5])
while held > budget or redis.call('XLEN', KEYS[2]) > size do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if not oldest then break end
  local fields, weight = oldest[2], 0
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then weight = tonumber(fields[i + 1]) end
  end
  redis.call('XDEL', KEYS[2], oldest[1])
  held = redis.call('HINCRBY', KEYS[1], 'hbytes', -weight)
end
inherit(2)
redis.call('PUBLISH', ARGV[4],
  '{"o":' .. top .. ',"e":"' .. epoch .. '","p":' .. ARGV[1] .. '}')
if KEYS[3] then
  redis.call('SET', KEYS[3], top .. ' ' .. epoch, 'PX', tonumber(ARGV[6]))
end
return {'ok', top, epoch}
