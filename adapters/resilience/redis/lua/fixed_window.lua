-- Fixed window: a counter per aligned window.  Mirrors
-- resilience/ratelimit/algorithms/fixed_window.py (FixedWindow.decide).
--
-- KEYS[1]  state: window index and cost used in it, packed
-- ARGV     now ('' = server TIME), cost, packed {period, limit, ttl margin ms}
-- Returns  "<allowed> <remaining> <retry_after> <reset_after> <delay>" (see reply)

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local period, limit, margin = unpack_state(ARGV[3])
local key = KEYS[1]

local window = window_index(now, period)
local used = 0
local raw = redis.call('GET', key)
if raw then
  local w, u = unpack_state(raw)
  if w >= window then
    -- The same window, or a clock behind the newest one (another host's, with
    -- clock="client"): count in the newest, never in a rebuilt (forgiven) older one.
    window = w
    used = u
  end
end
local stop = (window + 1) * period

if cost > limit then
  local reset = 0
  if used ~= 0 then
    reset = stop - now
  end
  return reply(0, trunc(limit - used), INF, reset, 0)
end
if used + cost <= limit then
  redis.call('SET', key, pack(window, used + cost), 'PX', ttl_ms(stop - now, margin))
  return reply(1, trunc(limit - used - cost), 0, stop - now, 0)
end
return reply(0, trunc(limit - used), wait_until(now, stop), stop - now, 0)
