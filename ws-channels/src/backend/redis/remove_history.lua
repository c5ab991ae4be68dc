-- KEYS: meta, hist. ARGV: a new epoch
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'top', 0, 'hbytes', 0)
end
return 'ok'
