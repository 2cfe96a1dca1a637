-- Grant slots to the tickets given, in the order tickets reached Redis; say when to ask again.
-- KEYS: held, active, queue, seen, seq, state, floors, processes, hold_floors, shares (see
-- scripts.py).
-- ARGV: limit, unit, active_hold, ticket_ttl, floor_ttl, process, how many tickets to drop; then
-- the tickets to drop, and the tickets waiting.
local held, active, queue, seen, seq, state, floors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local processes, hold_floors, shares = KEYS[8], KEYS[9], KEYS[10]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, unit = tonumber(ARGV[1]), tonumber(ARGV[2])
local active_hold, ticket_ttl, floor_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local process = ARGV[6]
local tickets_from = 8 + tonumber(ARGV[7])
-- Tickets no longer waiting (given up on, or served by the fallback) leave the line at once.
for i = 8, tickets_from - 1 do
  redis.call('ZREM', queue, ARGV[i])
  redis.call('ZREM', seen, ARGV[i])
end
local blocked = tonumber(redis.call('HGET', state, 'blocked_until') or '0')
if now < blocked then
  return {'blocked', tostring(now), tostring(blocked - now), redis.call('HGET', state, 'block_reason') or ''}
end
for _, lease in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', now)) do redis.call('HDEL', hold_floors, lease) end
redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - ticket_ttl)) do
  redis.call('ZREM', queue, ticket)
  redis.call('ZREM', seen, ticket)
end
-- The least path floor among the processes asking lately: one that has not told its own may
-- be next to the exchange, so then it is 0.
redis.call('ZADD', processes, now, process)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', processes, '-inf', now - floor_ttl)) do
  redis.call('HDEL', floors, gone)
end
redis.call('ZREMRANGEBYSCORE', processes, '-inf', now - floor_ttl)
local least = nil
for _, other in ipairs(redis.call('ZRANGE', processes, 0, -1)) do
  local value = redis.call('HGET', floors, other)
  local floor = 0
  if value then
    local sep = string.find(value, ':', 1, true)
    local at = tonumber(string.sub(value, sep + 1))
    if now - at <= floor_ttl then floor = tonumber(string.sub(value, 1, sep - 1)) end
  end
  if least == nil or floor < least then least = floor end
end
-- A hold set from its process's floor `own` subtracts (own + least) / 2 when another path is
-- faster (its requests may arrive sooner after leaving). Every hold of `hold_floors` subtracts
-- at most what the least stored in `state` allows; when the least drops below it (a faster
-- process joins, or one forgets its path), the holds already set are lengthened before any
-- grant. They are at most `limit` plus the abandoned ones: the loop is short.
local applied = tonumber(redis.call('HGET', state, 'least') or '')
if applied == nil or least < applied then
  local entries = redis.call('HGETALL', hold_floors)
  for i = 1, #entries, 2 do
    local lease, value = entries[i], entries[i + 1]
    local sep = string.find(value, ':', 1, true)
    local own, subtracted = tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1))
    local wanted = own
    if least < own then wanted = (own + least) / 2 end
    if wanted < subtracted then
      local until_ = redis.call('ZSCORE', held, lease)
      if until_ then
        redis.call('ZADD', held, tonumber(until_) + subtracted - wanted, lease)
        redis.call('HSET', hold_floors, lease, tostring(own) .. ':' .. tostring(wanted))
      else
        redis.call('HDEL', hold_floors, lease)
      end
    end
  end
end
redis.call('HSET', state, 'least', tostring(least))
local mine = {}
for i = tickets_from, #ARGV do
  local ticket = ARGV[i]
  mine[ticket] = true
  if not redis.call('ZSCORE', queue, ticket) then
    redis.call('ZADD', queue, redis.call('INCR', seq), ticket)
  end
  redis.call('ZADD', seen, now, ticket)
end
-- The share of the budget: the step of the schedule the last 429 set (release.lua) that is
-- in force now; the steps before it are over.
local share = limit
local step = redis.call('ZREVRANGEBYSCORE', shares, now, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
if step[1] then
  share = tonumber(string.sub(step[1], 1, string.find(step[1], ':', 1, true) - 1))
  redis.call('ZREMRANGEBYSCORE', shares, '-inf', '(' .. step[2])
end
local paused = tonumber(redis.call('HGET', state, 'paused_until') or '0')
local taken = redis.call('ZCARD', held) + redis.call('ZCARD', active)
local granted = {}
if now >= paused and taken < share then
  for _, ticket in ipairs(redis.call('ZRANGE', queue, 0, share - taken - 1)) do
    if mine[ticket] then
      redis.call('ZREM', queue, ticket)
      redis.call('ZREM', seen, ticket)
      redis.call('ZADD', active, now + active_hold, ticket)
      table.insert(granted, ticket)
    end
  end
  taken = taken + #granted
end
local retry = -1
local first = nil
for i = tickets_from, #ARGV do
  local rank = redis.call('ZRANK', queue, ARGV[i])
  if rank and (first == nil or rank < first) then first = rank end
end
if first ~= nil then
  if now < paused then
    retry = paused - now
  else
    -- `need` slots must free before the first waiting ticket's turn: the need-th hold to end,
    -- if that many are held (a slot still in flight frees after its answer: ask again shortly).
    -- Beyond the slots taken now, every slot frees at most once a window (a slot granted
    -- again holds at least that long): no sooner than a window from now, and one more window
    -- per `limit` slots after that. (`need` < 1: a free slot waits for a ticket of another
    -- process ahead in line, which asks for it shortly.)
    local need = taken - share + first + 1
    if need > taken then
      retry = (1 + math.floor((need - taken - 1) / limit)) * unit
    elseif need >= 1 then
      local holds = redis.call('ZRANGE', held, need - 1, need - 1, 'WITHSCORES')
      if holds[2] then retry = tonumber(holds[2]) - now end
    end
  end
end
local reply = {'ok', tostring(now), tostring(retry), tostring(taken), tostring(share)}
for _, ticket in ipairs(granted) do table.insert(reply, ticket) end
return reply
