-- A user's role and whether a ban holds now. ARGV: user name.
-- Reply: status, role ('' for participant), banned (0 or 1)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found', '', 0} end
local name = ARGV[1]
local role = redis.call('HGET', KEYS[6], name) or ''
local ban = redis.call('HGET', KEYS[7], name)
local banned = 0
if ban and (ban == '0' or tonumber(ban) > now_ms()) then banned = 1 end
return {'ok', role, banned}
