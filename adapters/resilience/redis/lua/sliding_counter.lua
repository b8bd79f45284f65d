-- Sliding-window counter with `buckets` sub-buckets and a running total.
-- Mirrors resilience/ratelimit/algorithms/sliding_counter.py
-- (SlidingWindowCounter.decide, _advance, _threshold, _allow_at).
--
-- KEYS[1]  state: index, total, last, ring[0] ... ring[buckets], packed
-- ARGV     now ('' = server TIME), cost,
--          packed {width (period / buckets), limit, buckets, ttl margin ms}
-- Returns  "<allowed> <remaining> <retry_after> <reset_after> <delay>" (see reply)

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local width, limit, n, margin = unpack_state(ARGV[3])
local key = KEYS[1]
local slots = n + 1

-- Python's _floor: a count estimate floored, tolerant of rounding, never negative.
local function floor_count(value)
  local whole = trunc(value + 1e-9)
  if whole > 0 then
    return whole
  end
  return 0
end

local index = window_index(now, width)
local ring = {}
local current, total, last
local changed = false
local raw = redis.call('GET', key)
if raw then
  local values = {unpack_state(raw)}
  current, total, last = values[1], values[2], values[3]
  for i = 1, slots do
    ring[i] = values[i + 3] or 0
  end
  if index > current then
    changed = true
    if index - current > n then
      for i = 1, slots do
        ring[i] = 0
      end
      total = 0
      current = index
    else
      while current < index do
        total = total - ring[(current - n + 1) % slots + 1] -- becomes the weighted bucket
        current = current + 1
        ring[current % slots + 1] = 0
      end
    end
  elseif index < current then
    -- A clock that went backwards: relabel the newest sub-bucket as its own, keeping
    -- every count, so its refusals last no longer than without the step (_rebase).
    changed = true
    local delta = current - index
    local shift = delta % slots
    local old = ring
    ring = {}
    for i = 0, slots - 1 do
      ring[i + 1] = old[(i + shift) % slots + 1]
    end
    last = last - delta
    current = index
  end
else
  if cost > limit then
    return reply(0, limit, INF, 0, 0)
  end
  for i = 1, slots do
    ring[i] = 0
  end
  current, total, last = index, 0, index
  changed = true
end

-- Earliest time within sub-bucket `at_index` at which cost fits (INF if none).
local function threshold(at_index, weighted, sum)
  local room = limit - cost - sum
  if room < 0 then
    return INF
  end
  if weighted <= room then
    return at_index * width
  end
  return at_index * width + width * (1.0 - room / weighted)
end

local function save(full_at)
  local life = 0
  if full_at then
    life = full_at - now
  end
  redis.call('SET', key, pack(current, total, last, unpack(ring)), 'PX', ttl_ms(life, margin))
end

local function save_if_changed()
  if changed then
    local full_at = nil
    if total ~= 0 or ring[(current - n) % slots + 1] ~= 0 then
      full_at = (last + n + 1) * width
    end
    save(full_at)
  end
end

local weighted = ring[(index - n) % slots + 1]
local phase = (now - index * width) / width
local estimate = total
if weighted ~= 0 then
  estimate = weighted * (1.0 - phase) + total
end
local reset = 0
if total ~= 0 or weighted ~= 0 then
  reset = (last + n + 1) * width - now
  if reset < 0 then  -- float residue in the running total: already full again
    reset = 0
  end
end

if cost > limit then
  save_if_changed()
  return reply(0, floor_count(limit - estimate), INF, reset, 0)
end

-- Admit when weighted * (1 - phase) <= room (the Python test, term for term).
local room = limit - cost - total
if room >= weighted or (room >= 0 and now >= index * width + width * (1.0 - room / weighted)) then
  local slot = index % slots + 1
  ring[slot] = ring[slot] + cost
  total = total + cost
  last = index
  save((index + n + 1) * width)
  return reply(1, floor_count(limit - estimate - cost), 0, (index + n + 1) * width - now, 0)
end

-- Rejected: simulate sub-buckets ahead (no arrivals) until cost fits.
local function allow_at()
  local at_index = current
  local sum = total
  local w = ring[(at_index - n) % slots + 1]
  for step = 0, n do
    if step > 0 then
      w = ring[(at_index - n + 1) % slots + 1]
      sum = sum - w
      at_index = at_index + 1
    end
    local at = threshold(at_index, w, sum)
    if at < INF then
      return at
    end
  end
  return (at_index + 1) * width
end

save_if_changed()
return reply(0, floor_count(limit - estimate), wait_until(now, allow_at()), reset, 0)
