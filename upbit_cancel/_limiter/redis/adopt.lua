-- Hold slots taken outside Redis (while it was unreachable) for the durations given.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #ARGV, 2 do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i + 1]), ARGV[i]) end
return tostring(now)
