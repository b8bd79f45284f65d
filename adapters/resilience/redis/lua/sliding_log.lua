-- Sliding-window log: every admitted request still in the window.  Mirrors
-- resilience/ratelimit/algorithms/sliding_log.py (SlidingWindowLog.decide).
--
-- KEYS[1]  a list: element 0 is the running total of the costs and the newest
--          entry's time, then one entry per admitted request, oldest first: its
--          time, and its cost when not 1 (all packed).  No list = no state.
-- ARGV     now ('' = server TIME), cost, packed {period, limit, ttl margin ms}
-- Returns  "<allowed> <remaining> <retry_after> <reset_after> <delay>" (see reply)

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local period, limit, margin = unpack_state(ARGV[3])
local key = KEYS[1]
local FIRST = 2 -- entries read with the total; most decisions drop none or one
local BATCH = 16 -- entries per further LRANGE

local function entry(e)
  local t, c = unpack_state(e)
  return t, c or 1
end

local batch = redis.call('LRANGE', key, 0, FIRST)
local exists = #batch > 0
local total, newest = 0, nil
if exists then
  total, newest = unpack_state(batch[1])
elseif cost > limit then
  return reply(0, limit, INF, 0, 0)
end

-- Entries stamped after now (a clock that stepped back, or another host's with
-- clock="client") count from now: the list stays sorted and none counts longer than
-- a period from now, so nobody waits out the step (_restamp in the Python original).
if exists then
  local latest = newest
  if latest == nil and #batch > 1 then -- (keys written before 2026-11-22 lack it)
    latest = entry(redis.call('LINDEX', key, -1))
  end
  if latest and latest > now then
    local high = redis.call('LLEN', key) - 1
    local low_done = false
    while high >= 1 and not low_done do
      local low = high - BATCH + 1
      if low < 1 then
        low = 1
      end
      local chunk = redis.call('LRANGE', key, low, high)
      for i = #chunk, 1, -1 do
        local t, c = entry(chunk[i])
        if t <= now then
          low_done = true
          break
        end
        if c == 1 then
          redis.call('LSET', key, low + i - 1, pack(now))
        else
          redis.call('LSET', key, low + i - 1, pack(now, c))
        end
      end
      high = low - 1
    end
    newest = now
    redis.call('LSET', key, 0, pack(total, newest))
    batch = redis.call('LRANGE', key, 0, FIRST)
  end
end

-- Drop the entries that left the window: admitted at t, counted in [t, t + period).
local popped = 0
local first = 2
local kept = false -- an entry is still in the window
while #batch >= first do
  for i = first, #batch do
    local t, c = entry(batch[i])
    if t + period <= now then
      total = total - c
      popped = popped + 1
    else
      kept = true
      break
    end
  end
  if kept then
    break
  end
  batch = redis.call('LRANGE', key, popped + 1, popped + BATCH)
  first = 1
end
if not kept then
  total = 0 -- drop the float residue of fractional costs with the last entry (as in Python)
end

-- Write the new total in place of the last dropped entry, then trim up to it.
local function store_total(new_total, new_newest)
  redis.call('LSET', key, popped, pack(new_total, new_newest))
  if popped > 0 then
    redis.call('LTRIM', key, popped, -1)
  end
end

-- When the newest entry leaves the window (the key is full again then), or nil.
local function newest_full_at()
  if redis.call('LLEN', key) - 1 - popped > 0 then
    local t = entry(redis.call('LINDEX', key, -1))
    return t + period
  end
  return nil
end

local function expire(full_at)
  local life = 0
  if full_at then
    life = full_at - now
  end
  redis.call('PEXPIRE', key, ttl_ms(life, margin))
end

if cost > limit then
  local full_at = newest_full_at()
  if popped > 0 then
    store_total(total, newest)
    expire(full_at)
  end
  local reset = 0
  if full_at then
    reset = full_at - now
  end
  return reply(0, trunc(limit - total), INF, reset, 0)
end

if total + cost <= limit then
  local e
  if cost == 1 then
    e = pack(now)
  else
    e = pack(now, cost)
  end
  if exists then
    store_total(total + cost, now)
    redis.call('RPUSH', key, e)
  else
    redis.call('RPUSH', key, pack(total + cost, now), e)
  end
  redis.call('PEXPIRE', key, ttl_ms(period, margin))
  return reply(1, trunc(limit - total - cost), 0, period, 0)
end

-- Rejected: the earliest time enough of the oldest entries have left, replaying the
-- running total as the pops will compute it (zero once the list is empty), so a retry
-- then is admitted even with float residue from fractional costs (as in Python).
local left = total
local count = redis.call('LLEN', key) - 1 - popped -- entries still in the window
local allow_at = INF
local pos = popped + 1
local seen = 0
local done = false
while not done do
  local chunk = redis.call('LRANGE', key, pos, pos + BATCH - 1)
  for i = 1, #chunk do
    local t, c = entry(chunk[i])
    seen = seen + 1
    if seen < count then
      left = left - c
    else
      left = 0
    end
    if left + cost <= limit then
      allow_at = t + period
      done = true
      break
    end
  end
  if #chunk < BATCH then
    break
  end
  pos = pos + BATCH
end
local full_at = newest_full_at()
if popped > 0 then
  store_total(total, newest)
  expire(full_at)
end
local reset = 0
if full_at then
  reset = full_at - now
end
return reply(0, trunc(limit - total), wait_until(now, allow_at), reset, 0)
