-- Shared by every script on a channel's keys, which share one hash tag:
-- KEYS[1] meta   HASH   opts (ChannelOptions JSON), seq (next join order),
--                       epoch, top (newest history offset)
-- KEYS[2] mem    ZSET   session -> join order (the roster, oldest first)
-- KEYS[3] exp    ZSET   session -> expiry, ms of the Redis clock
-- KEYS[4] info   HASH   session -> member JSON, as the joining node sent it
-- KEYS[5] who    HASH   session -> node "\n" role "\n" user ("" or "=" name)
-- KEYS[6] roles  HASH   user name -> role, for joins to come
-- KEYS[7] bans   HASH   user name -> until, ms of the Redis clock (0: forever)
-- KEYS[8] hist   STREAM id "<offset>-0", fields x (expiry ms) and p (JSON)
-- KEYS[9] kicked HASH   session -> until, ms: kicked sessions a node that
--                       missed the kick must not write back
-- KEYS[10] closed STRING the owner closed the channel: no node writes its
--                       members back (outlives the other keys by an hour)
-- Times come from the Redis server's clock, so nodes' clocks never disagree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether a ban on the user named holds now; a ban that ran out goes.
local function banned(name, now)
  local ban = redis.call('HGET', KEYS[7], name)
  if not ban then return false end
  if ban == '0' or tonumber(ban) > now then return true end
  redis.call('HDEL', KEYS[7], name)
  return false
end

local function split_who(who)
  return string.match(who, '^([^\n]*)\n([^\n]*)\n(.*)$')
end

local function remove(session)
  redis.call('ZREM', KEYS[2], session)
  redis.call('ZREM', KEYS[3], session)
  redis.call('HDEL', KEYS[4], session)
  redis.call('HDEL', KEYS[5], session)
end

-- Removes expired entries; their member JSON, for leave events.
local function reap(now)
  local gone = {}
  for _, session in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
    local info = redis.call('HGET', KEYS[4], session)
    if info then gone[#gone + 1] = info end
    remove(session)
  end
  return gone
end

-- Every key of the channel lives `ms` more.
local function live_for(ms)
  for i = 1, 9 do redis.call('PEXPIRE', KEYS[i], ms) end
end

-- A key made after the others lives as long as the channel.
local function inherit(i)
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then redis.call('PEXPIRE', KEYS[i], left) end
end

-- A channel with members lives while they are refreshed, then lingers; an
-- empty one lingers from now.
local function settle(opts, ttl)
  local linger = opts.linger * 1000
  if redis.call('ZCARD', KEYS[2]) == 0 then
    live_for(math.max(linger, 1))
  else
    live_for(ttl + linger)
  end
end

-- Adds a member: join order, expiry, member JSON, node/role/user.
local function add(session, now, ttl, info, node, role, user)
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('ZADD', KEYS[2], seq, session)
  redis.call('ZADD', KEYS[3], now + ttl, session)
  redis.call('HSET', KEYS[4], session, info)
  redis.call('HSET', KEYS[5], session, node .. '\n' .. role .. '\n' .. user)
end
