-- Token bucket, GCRA and leaky bucket (police and shape): one float per key,
-- the time at which the bucket is full again.  Mirrors
-- resilience/ratelimit/algorithms/virtual_time.py (_VirtualTime.decide).
--
-- KEYS[1]  state: the float, packed
-- ARGV     now ('' = server TIME), cost, packed {interval, burst, shape (0/1), ttl margin ms}
-- Returns  "<allowed> <remaining> <retry_after> <reset_after> <delay>" (see reply)

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local interval, burst, shape, margin = unpack_state(ARGV[3])
local key = KEYS[1]

local state = redis.call('GET', key)
if state then
  state = unpack_state(state)
end

if not state or state <= now then
  if cost > burst then
    return reply(0, burst, INF, 0, 0)
  end
  local full_at = now + cost * interval
  redis.call('SET', key, pack(full_at), 'PX', ttl_ms(full_at - now, margin))
  return reply(1, trunc(burst - cost + 1e-9), 0, full_at - now, 0)
end

-- A state further ahead of now than an empty bucket, which no admission produces: a
-- clock that stepped back.  Pulled back to empty as of now, beyond the admission's
-- slack and a few ulps, and stored, so the refusal answered is the one a retry meets
-- (_VirtualTime.behind; only rejections can meet such a state).
local span = burst * interval
local function behind()
  local size = math.abs(state)
  if state - now > span + size * ((burst - 1) * 4.5e-16) + (size + span) * 1.7763568394002505e-15 then
    state = now + span
    redis.call('SET', key, pack(state), 'PX', ttl_ms(state - now, margin))
    return true
  end
  return false
end

if cost > burst then
  behind()
  return reply(0, trunc(burst - (state - now) / interval + 1e-9), INF, state - now, 0)
end

-- Slack for the roundings accumulated in state (see virtual_time.py, _FLOAT_SLACK).
local allow_at = state - (burst - cost) * interval - math.abs(state) * ((burst - 1) * 4.5e-16)
if now >= allow_at then
  local full_at = state + cost * interval
  local remaining = trunc(burst - (full_at - now) / interval + 1e-9)
  if remaining < 0 then
    remaining = 0
  end
  local delay = 0
  if shape == 1 then
    delay = state - now
  end
  redis.call('SET', key, pack(full_at), 'PX', ttl_ms(full_at - now, margin))
  return reply(1, remaining, 0, full_at - now, delay)
end

if state - now > span and behind() then
  allow_at = state - (burst - cost) * interval - math.abs(state) * ((burst - 1) * 4.5e-16)
end
local remaining = trunc(burst - (state - now) / interval + 1e-9)
if remaining < 0 then
  remaining = 0
end
return reply(0, remaining, wait_until(now, allow_at), state - now, 0)
