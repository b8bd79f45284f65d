-- Shared helpers, prepended to every script.  They mirror the Python core
-- (resilience/ratelimit/algorithms/base.py) operation by operation: Lua
-- numbers are IEEE doubles like Python floats, so the same operations in
-- the same order give bit-identical results.
--
-- State is stored with cmsgpack (built into Redis and Valkey): doubles as
-- float64 (or float32 / integers when that is exact), so values read back
-- bit for bit, ten times faster than formatting them as text, and smaller.

local floor, ceil, frexp, ldexp = math.floor, math.ceil, math.frexp, math.ldexp
local fmt = string.format
local pack, unpack_state = cmsgpack.pack, cmsgpack.unpack
local INF = math.huge
local TINY = 4.9406564584124654e-324 -- the smallest positive double

-- A float as text that reads back to the same double (%.17g round-trips).
local function num(x)
  if x == 0 then
    return '0'
  end
  return fmt('%.17g', x)
end

-- A decision as one bulk string: Redis would truncate Lua numbers in a reply
-- to integers, and one string is cheaper to build and to parse than a table.
local function reply(allowed, remaining, retry_after, reset_after, delay)
  return fmt('%d %d %s %s %s', allowed, remaining, num(retry_after), num(reset_after), num(delay))
end

-- ARGV[1] is the caller's clock, or '' for the server's TIME.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  if not redis.REDIS_VERSION_NUM and redis.replicate_commands then
    -- Redis < 5 replicates scripts verbatim; TIME needs effect replication
    -- (the default from Redis 5 on; REDIS_VERSION_NUM exists from 7.0).
    pcall(redis.replicate_commands)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Python's int(): truncate toward zero.
local function trunc(x)
  if x >= 0 then
    return floor(x)
  end
  return ceil(x)
end

-- math.nextafter(x, inf) for a positive x.
local function next_up(x)
  local _, e = frexp(x)
  local ulp = ldexp(1, e - 53)
  if ulp < TINY then
    ulp = TINY
  end
  return x + ulp
end

-- Smallest d >= 0 with now + d >= target in floating point (base.wait_until).
local function wait_until(now, target)
  local delay = target - now
  if delay <= 0 then
    return 0
  end
  while now + delay < target do
    delay = next_up(delay)
  end
  return delay
end

-- Index w of the aligned window holding now (base.window_index).
local function window_index(now, width)
  local w = floor(now / width)
  if now >= (w + 1) * width then
    return w + 1
  end
  if now < w * width then
    return w - 1
  end
  return w
end

-- Milliseconds a key must live: until its state is full again, plus a margin.
-- As an integer string: Redis rejects exponent notation in PX / PEXPIRE.
local function ttl_ms(seconds, margin_ms)
  local ms = margin_ms
  if seconds > 0 then
    ms = ms + ceil(seconds * 1000)
  end
  if ms > 1e15 then
    ms = 1e15
  end
  return fmt('%d', ms)
end

