-- Compare-and-set of one string key. KEYS[1]: the key. ARGV: the value
-- read ('' when there was none), the new value ('' deletes the key), its
-- TTL in ms. Reply: 1 when set, 0 when the key changed since it was read.
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
end
return 1
