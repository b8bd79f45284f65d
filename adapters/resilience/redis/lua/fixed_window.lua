-- Fixed window: a counter per aligned window.  Mirrors
-- resilience/ratelimit/algorithms/fixed_window.py (FixedWindow.decide).
--
-- KEYS[1]  state: window index and cost used in it (and a re-anchored start), packed
-- ARGV     now ('' = server TIME), cost, packed {period, limit, ttl margin ms}
-- Returns  "<allowed> <remaining> <retry_after> <reset_after> <delay>" (see reply)

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local period, limit, margin = unpack_state(ARGV[3])
local key = KEYS[1]

-- State: {window, used}, or {window, used, start} for a window re-anchored at `start`
-- (after a clock stepped back before the newest window; it ends at start + period).
local start, stop, used, anchored = nil, nil, 0, nil
local window
local rewrite = false
local raw = redis.call('GET', key)
if raw then
  local w, u, s = unpack_state(raw)
  if s then
    start, stop = s, s + period
  else
    start, stop = w * period, (w + 1) * period
  end
  if start <= now and now < stop then
    window, used, anchored = w, u, s
  elseif now < start then
    -- A clock behind the newest window (stepped back, or another host's with
    -- clock="client"): that window restarts now with its count (never a rebuilt,
    -- forgiven older one), so the wait is at most one period.
    window, used, anchored = w, u, now
    start, stop = now, now + period
    rewrite = true
  else
    start = nil
  end
end
if not start then
  window = window_index(now, period)
  stop = (window + 1) * period
end

local function save(new_used)
  if anchored then
    redis.call('SET', key, pack(window, new_used, anchored), 'PX', ttl_ms(stop - now, margin))
  else
    redis.call('SET', key, pack(window, new_used), 'PX', ttl_ms(stop - now, margin))
  end
end

if cost > limit then
  if rewrite then
    save(used)
  end
  local reset = 0
  if used ~= 0 then
    reset = stop - now
  end
  return reply(0, trunc(limit - used), INF, reset, 0)
end
if used + cost <= limit then
  save(used + cost)
  return reply(1, trunc(limit - used - cost), 0, stop - now, 0)
end
if rewrite then
  save(used)
end
return reply(0, trunc(limit - used), wait_until(now, stop), stop - now, 0)
