-- May a call run?  (MemoryBreakerTable.acquire and the states' acquire.)
-- Closed admits and writes nothing; open refuses until open_duration has
-- passed, then moves to half-open and takes the first probe slot; half-open
-- admits exactly max_probes calls across every client.
-- ARGV[2]  unused
-- Returns  "<allowed> <state> <retry_after> <epoch> <transition or ->"

local function permit(allowed, state, retry_after, transition)
  return fmt('%d %s %s %d %s', allowed, LETTER[state], num(retry_after), epoch, transition or '-')
end

if st == CLOSED then
  return permit(1, CLOSED, 0)
end

if st == OPEN then
  if held == 1 or now < until_t then
    if held == 0 and until_t - now > open_duration then
      -- A clock that stepped back (NTP moving TIME, or a client clock): open for at
      -- most open_duration from now (OpenState.behind).
      until_t = now + open_duration
      save_state()
    end
    return permit(0, OPEN, open_wait())
  end
  local transition = enter(HALF, 'open_duration_elapsed', 0)
  in_flight = 1
  save_state()
  expire()
  return permit(1, HALF, 0, transition)
end

if in_flight + succeeded < max_probes then
  in_flight = in_flight + 1
  save_state()
  expire()
  return permit(1, HALF, 0)
end

if since > now then
  -- A clock that stepped back: the probes' timeout counts from now at the latest.
  since = now
  save_state()
end
if probe_timeout >= 0 and now >= since + probe_timeout then
  -- The probes have not all reported in time (a prober died?): reopen.
  local transition = enter(OPEN, 'probe_timeout', 0)
  expire()
  return permit(0, OPEN, open_wait(), transition)
end

-- Unknown until the probes finish; the worst case is a reopen for open_duration.
return permit(0, HALF, open_duration)
