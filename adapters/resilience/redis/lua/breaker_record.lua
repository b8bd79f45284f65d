-- A permitted call finished.  (MemoryBreakerTable.record and the states' record.)
-- ARGV[2]  "<epoch of the permit> <code>", code = failed + 2 * slow
-- Returns  "<transition>" or "-"; an outcome from an earlier epoch is ignored.

local token, code = string.match(arg, '^(%S+) (%d)$')
if tonumber(token) ~= epoch then
  return '-'
end
code = tonumber(code)
local failed, slow = code % 2, floor(code / 2)

if st == CLOSED then
  load_window()
  if is_time == 1 then
    time_add(failed, slow)
  else
    count_add(failed, slow)
  end
  if failed == 1 then
    run = run + 1
  else
    run = 0
  end
  save_window()
  local transition = '-'
  if held == 0 then
    local reason = should_open(calls, failures, slow_calls, run)
    if reason then
      transition = enter(OPEN, reason, 0)
    end
  end
  expire()
  return transition
end

if st ~= HALF or in_flight <= 0 then -- open, or a probe reported twice
  return '-'
end

in_flight = in_flight - 1
local transition
if failed == 1 then
  transition = enter(OPEN, 'probe_failed', 0) -- a failure wins, whatever else is in flight
else
  succeeded = succeeded + 1
  slow_probes = slow_probes + slow
  if succeeded < max_probes then
    save_state()
    expire()
    return '-'
  end
  local reason = should_reopen(succeeded, slow_probes)
  if reason then
    transition = enter(OPEN, reason, 0)
  else
    transition = enter(CLOSED, 'probes_succeeded', 0)
  end
end
expire()
return transition
