-- Circuit-breaker state, shared by the breaker_*.lua scripts (after the prelude).
-- Mirrors resilience/breaker/states.py (the state machine), metrics.py (the
-- window's running totals) and decider.py (when to open), operation by
-- operation, so a table in Redis answers exactly as the in-memory one.
--
-- KEYS[1]  the breaker's hash (every field of one breaker in one key):
--            'h'            state: st, epoch, held, until, in_flight, succeeded,
--                           slow_probes, since
--            '<geom>:w'     window header: epoch, seq, base, calls, failures, slow,
--                           run, head
--            '<geom>:<i>'   window ring entry i
--          A missing key (or field) is a closed circuit with an empty window.
-- ARGV     now ('' = server TIME), the operation's argument,
--          packed {is_time, span, buckets, failure_rate, minimum_calls,
--                  consecutive, slow_rate, open_duration, half_open_max,
--                  idle_ms, held_ms, probe_timeout} (-1 = trigger off),
--          the window's geometry tag (breakers whose windows differ in shape
--          keep separate windows but share the state)

local key = KEYS[1]
local now = clock(ARGV[1])
local arg = ARGV[2]
local is_time, span, nbuckets, rate_limit, minimum, consecutive, slow_limit, open_duration,
  max_probes, idle_ms, held_ms, probe_timeout = unpack_state(ARGV[3])
local geom = ARGV[4]
local wkey = geom .. ':w'

local CLOSED, OPEN, HALF = 0, 1, 2
local LETTER = { [0] = 'c', [1] = 'o', [2] = 'h' }
local MAX_STAMP = 4503599627370496 -- 2^52: epochs stay exact integers

local st, epoch, held, until_t, in_flight, succeeded, slow_probes, since = CLOSED, 0, 0, 0, 0, 0, 0, 0
local raw_state = redis.call('HGET', key, 'h')
if raw_state then
  st, epoch, held, until_t, in_flight, succeeded, slow_probes, since = unpack_state(raw_state)
end

local function save_state()
  redis.call('HSET', key, 'h', pack(st, epoch, held, until_t, in_flight, succeeded, slow_probes, since))
end

-- Every write refreshes the key's expiry: an abandoned breaker vanishes
-- (and a missing key is a closed circuit); a held one lasts held_ms.
local function expire()
  local ms = idle_ms
  if held == 1 then
    ms = held_ms
  end
  redis.call('PEXPIRE', key, fmt('%d', ms))
end

-- A new state is a new epoch: permits of the old one are stale from now on.
-- Epochs follow the clock (in ms) where they can, so a key that expired and
-- was created again does not hand out the numbers of permits still in flight.
local function enter(new, reason, hold)
  local old = st
  local stamp = floor(now * 1000)
  if stamp > epoch and stamp < MAX_STAMP then
    epoch = stamp
  else
    epoch = epoch + 1
  end
  st, held = new, hold
  in_flight, succeeded, slow_probes, since, until_t = 0, 0, 0, now, 0
  if new == OPEN and hold == 0 then
    until_t = now + open_duration
  end
  save_state()
  return LETTER[old] .. LETTER[new] .. ':' .. reason
end

-- OpenState.retry_after (never more than open_duration: a clock that stepped back
-- finds until_t further ahead, and the next acquire pulls it back, OpenState.behind)
local function open_wait()
  if held == 1 then
    return open_duration
  end
  if until_t - now > open_duration then
    return wait_until(now, now + open_duration)
  end
  return wait_until(now, until_t)
end

-- TripDecider.should_open
local function should_open(calls, failures, slow, run)
  if consecutive > 0 and run >= consecutive then
    return 'consecutive_failures'
  end
  if calls < minimum then
    return nil
  end
  if rate_limit >= 0 and failures / calls >= rate_limit then
    return 'failure_rate'
  end
  if slow_limit >= 0 and slow / calls >= slow_limit then
    return 'slow_call_rate'
  end
  return nil
end

-- TripDecider.should_reopen
local function should_reopen(probes, slow)
  if slow_limit >= 0 and probes > 0 and slow / probes >= slow_limit then
    return 'slow_call_rate'
  end
  return nil
end

-- The closed epoch's window.  Ring entries are never cleared in bulk: each is
-- tagged (a count entry with its call's sequence number, a time bucket with
-- its epoch and bucket index) and an entry whose tag does not fit is empty.
local w_epoch, seq, base, calls, failures, slow_calls, run, head

local function load_window()
  seq = 0
  local raw = redis.call('HGET', key, wkey)
  if raw then
    w_epoch, seq, base, calls, failures, slow_calls, run, head = unpack_state(raw)
  end
  if not raw or w_epoch ~= epoch then
    w_epoch, base, calls, failures, slow_calls, run, head = epoch, seq, 0, 0, 0, 0, 0
    if is_time == 1 then
      head = floor(now / span) -- metrics.bucket_index
    end
  end
end

local function save_window()
  redis.call('HSET', key, wkey, pack(w_epoch, seq, base, calls, failures, slow_calls, run, head))
end

local function ring_field(i)
  return geom .. ':' .. fmt('%d', i)
end

-- CountMetrics: the last `span` calls.  Only failed or slow calls leave an
-- entry (seq * 4 + code, code = failed + 2 * slow), in slot seq % span; the
-- call that takes a slot pushes the one `span` calls older out of the totals.
local function count_add(failed, slow)
  seq = seq + 1
  local field = ring_field(seq % span)
  local raw = redis.call('HGET', key, field)
  if raw then
    local value = tonumber(raw)
    local old = floor(value / 4)
    if old > base and old == seq - span then
      local code = value % 4
      failures = failures - code % 2
      slow_calls = slow_calls - floor(code / 2)
    end
  end
  local code = failed + 2 * slow
  if code ~= 0 then
    redis.call('HSET', key, field, fmt('%d', seq * 4 + code))
  elseif raw then
    redis.call('HDEL', key, field)
  end
  failures, slow_calls = failures + failed, slow_calls + slow
  calls = seq - base
  if calls > span then
    calls = span
  end
end

-- A time bucket's counts, if the ring entry holds bucket `index` of this epoch.
local function bucket(field, index)
  local raw = redis.call('HGET', key, field)
  if raw then
    local b_epoch, b_index, c, f, s = unpack_state(raw)
    if b_epoch == w_epoch and b_index == index then
      return c, f, s
    end
  end
  return 0, 0, 0
end

-- TimeMetrics._roll: advance to bucket k (> head), dropping the buckets that leave.
local function roll(k)
  if k - head >= nbuckets then
    calls, failures, slow_calls = 0, 0, 0
  else
    for j = head + 1, k do
      local c, f, s = bucket(ring_field(j % nbuckets), j - nbuckets)
      calls, failures, slow_calls = calls - c, failures - f, slow_calls - s
    end
  end
  head = k
end

-- TimeMetrics.add (a clock that stepped back stays in the current bucket).
local function time_add(failed, slow)
  local k = floor(now / span)
  if k > head then
    roll(k)
  end
  local field = ring_field(head % nbuckets)
  local c, f, s = bucket(field, head)
  redis.call('HSET', key, field, pack(w_epoch, head, c + 1, f + failed, s + slow))
  calls, failures, slow_calls = calls + 1, failures + failed, slow_calls + slow
end
