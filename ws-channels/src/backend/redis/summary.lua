-- Reply: {} when the channel is gone, else opts, live members
local optsj = redis.call('HGET', KEYS[1], 'opts')
if not optsj then return {} end
return {optsj, redis.call('ZCOUNT', KEYS[3], '(' .. now_ms(), '+inf')}
