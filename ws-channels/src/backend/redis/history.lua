-- KEYS: meta, hist. ARGV: after this offset (-1: none), limit.
-- Reply: {} when the channel is gone, else epoch, top, now, {id, x, p}...
local state = redis.call('HMGET', KEYS[1], 'epoch', 'top')
if not state[1] then return {} end
local now = now_ms()
local out = {}
local since = tonumber(ARGV[1])
local top = tonumber(state[2])
if since >= 0 and since < top and top - since <= tonumber(ARGV[2]) then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')) do
    local fields = entry[2]
    local x, p
    for i = 1, #fields, 2 do
      if fields[i] == 'x' then x = fields[i + 1] elseif fields[i] == 'p' then p = fields[i + 1] end
    end
    out[#out + 1] = entry[1]
    out[#out + 1] = x
    out[#out + 1] = p
  end
end
return {state[1], top, now, out}
