-- A user's role and whether a ban holds now. ARGV: user name.
-- Reply: status, role ('' for participant), banned (0 or 1)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found', '', 0} end
local name = ARGV[1]
local role = redis.call('HGET', KEYS[6], name) or ''
local ban = 0
if banned(name, now_ms()) then ban = 1 end
return {'ok', role, ban}
