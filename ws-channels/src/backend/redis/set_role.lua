-- ARGV: user name, role, most roles. Reply: status
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
local name, role = ARGV[1], ARGV[2]
if role == 'participant' then
  redis.call('HDEL', KEYS[6], name)
else
  if redis.call('HEXISTS', KEYS[6], name) == 0
     and redis.call('HLEN', KEYS[6]) >= tonumber(ARGV[3]) then
    return 'limit'
  end
  redis.call('HSET', KEYS[6], name, role)
  inherit(6)
end
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  local node, _, user = split_who(all[i + 1])
  if user == '=' .. name then
    redis.call('HSET', KEYS[5], all[i], node .. '\n' .. role .. '\n' .. user)
  end
end
return 'ok'
