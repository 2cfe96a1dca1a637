-- End a lease: hold its slot for the duration given, share what its answer said.
-- ARGV: lease, hold, pause, block, block reason, halve, limit, unit, process, its path floor,
-- whether it forgot its path, the floor the hold subtracted ('' if none).
local held, active, state, floors, processes, hold_floors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, hold, pause, block, reason = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local halve, limit, unit = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREM', active, lease)
if hold > 0 and ARGV[12] ~= '' then
  -- The hold subtracted this process's floor; another process's path may be faster (see
  -- acquire.lua): subtract only (own + least) / 2, and remember both in case the least drops.
  local own = tonumber(ARGV[12])
  local subtracted = own
  local least = tonumber(redis.call('HGET', state, 'least') or '')
  if least ~= nil and least < own then subtracted = (own + least) / 2 end
  hold = hold + own - subtracted
  redis.call('HSET', hold_floors, lease, tostring(own) .. ':' .. tostring(subtracted))
end
if hold > 0 then redis.call('ZADD', held, now + hold, lease) end
if pause > 0 then
  local paused = tonumber(redis.call('HGET', state, 'paused_until') or '0')
  if now + pause > paused then redis.call('HSET', state, 'paused_until', tostring(now + pause)) end
end
if block > 0 then
  local blocked = tonumber(redis.call('HGET', state, 'blocked_until') or '0')
  if now + block > blocked then
    redis.call('HSET', state, 'blocked_until', tostring(now + block), 'block_reason', reason)
  end
end
if halve == '1' then
  local share = limit
  local reduced = redis.call('HMGET', state, 'share', 'share_since')
  if reduced[1] then
    share = math.min(limit, tonumber(reduced[1]) + math.floor((now - tonumber(reduced[2])) / unit) * math.max(1, math.floor(limit / 10)))
  end
  redis.call('HSET', state, 'share', tostring(math.max(1, math.floor(share / 2))), 'share_since', tostring(now))
end
-- A floor counts only for a process asking lately (acquire.lua prunes both together).
if ARGV[10] ~= '' and redis.call('ZSCORE', processes, ARGV[9]) then
  redis.call('HSET', floors, ARGV[9], ARGV[10] .. ':' .. tostring(now))
end
if ARGV[10] == '' and ARGV[11] == '1' then redis.call('HDEL', floors, ARGV[9]) end
return tostring(now)
