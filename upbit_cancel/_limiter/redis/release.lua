-- End a lease: hold its slot for the duration given, store what its answer changed.
-- KEYS: held, active, state, floors, processes, hold_floors, shares (see scripts.py).
-- ARGV: lease, hold, pause, block, block reason, process, its path floor ('' if unknown),
-- whether it forgot its path, the floor the hold subtracted ('' if none), the number of share
-- steps, then each step's (seconds from now, slots).
local held, active, state, floors, processes, hold_floors, shares = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, hold, pause, block, reason = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local process, floor, forgot, subtracted = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
redis.call('ZREM', active, lease)
if hold > 0 and subtracted ~= '' then
  -- The hold subtracted this process's floor; another process's path may be faster (see
  -- acquire.lua): subtract only (own + least) / 2, and remember both in case the least drops.
  local own = tonumber(subtracted)
  local credited = own
  local least = tonumber(redis.call('HGET', state, 'least') or '')
  if least ~= nil and least < own then credited = (own + least) / 2 end
  hold = hold + own - credited
  redis.call('HSET', hold_floors, lease, tostring(own) .. ':' .. tostring(credited))
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
local steps = tonumber(ARGV[10])
if steps > 0 then
  -- A new share replaces the old one: the process computed it from the smaller of its own
  -- and the one acquire.lua last told it.
  redis.call('DEL', shares)
  for i = 0, steps - 1 do
    local offset, slots = tonumber(ARGV[11 + 2 * i]), ARGV[12 + 2 * i]
    redis.call('ZADD', shares, now + offset, slots .. ':' .. tostring(i))
  end
end
-- A floor counts only for a process asking lately (acquire.lua prunes both together).
if floor ~= '' and redis.call('ZSCORE', processes, process) then
  redis.call('HSET', floors, process, floor .. ':' .. tostring(now))
end
if floor == '' and forgot == '1' then redis.call('HDEL', floors, process) end
return tostring(now)
