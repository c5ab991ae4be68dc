-- Puts a node's members back after the broker lost them (its data, or a
-- peer took the node for dead); not a banned user's, not a session kicked
-- meanwhile, nobody in a channel its owner closed.
-- ARGV: opts, epoch, ttl ms, then per member: session, info, node, role, user
-- Reply: 'closed', or 'ok', how many were written back, the sessions
-- kicked, the sessions of banned users
if redis.call('EXISTS', KEYS[10]) == 1 then return {'closed', 0, {}, {}} end
local now = now_ms()
local ttl = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'opts', ARGV[1], 'seq', 0, 'epoch', ARGV[2], 'top', 0)
end
local opts = cjson.decode(redis.call('HGET', KEYS[1], 'opts'))
local restored, kicked, barred = 0, {}, {}
for i = 4, #ARGV, 5 do
  local session, role, user = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local kicked_until = tonumber(redis.call('HGET', KEYS[9], session) or '0')
  if redis.call('HEXISTS', KEYS[5], session) == 1 then
    -- Still there.
  elseif kicked_until > now then
    kicked[#kicked + 1] = session
  elseif user ~= '' and banned(string.sub(user, 2), now) then
    barred[#barred + 1] = session
  else
    add(session, now, ttl, ARGV[i + 1], ARGV[i + 2], role, user)
    if user ~= '' and role ~= 'participant' then
      redis.call('HSETNX', KEYS[6], string.sub(user, 2), role)
    end
    restored = restored + 1
  end
end
settle(opts, ttl)
return {'ok', restored, kicked, barred}
