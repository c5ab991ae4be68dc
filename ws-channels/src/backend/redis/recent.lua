-- KEYS: the channel's eight (meta and hist used). ARGV: how many at most.
-- Reply: {} when the channel is gone, else epoch, top, kept, {id, x, p}...
-- (newest first; expired entries left out).
local state = redis.call('HMGET', KEYS[1], 'epoch', 'top')
if not state[1] then return {} end
local now = now_ms()
local out = {}
local limit = tonumber(ARGV[1])
if limit > 0 then
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[8], '+', '-', 'COUNT', limit)) do
    local fields = entry[2]
    local x, p
    for i = 1, #fields, 2 do
      if fields[i] == 'x' then x = fields[i + 1] elseif fields[i] == 'p' then p = fields[i + 1] end
    end
    if tonumber(x) > now then
      out[#out + 1] = entry[1]
      out[#out + 1] = x
      out[#out + 1] = p
    end
  end
end
return {state[1], tonumber(state[2]), redis.call('XLEN', KEYS[8]), out}
