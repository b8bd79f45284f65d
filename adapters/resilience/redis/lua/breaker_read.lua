-- A snapshot, read only: the state a call would meet now and the window's totals.
-- ARGV[2]  unused
-- Returns  "<state> <held> <calls> <failures> <slow> <consecutive> <in_flight>
--           <succeeded> <retry_after>"

if st == CLOSED then
  load_window()
  if is_time == 1 then
    local k = floor(now / span)
    if k > head then
      roll(k) -- in this script's variables only: the next record rolls for real
    end
  end
  return fmt('c %d %d %d %d %d 0 0 0', held, calls, failures, slow_calls, run)
end

if st == OPEN then
  if held == 0 and now >= until_t then
    return 'h 0 0 0 0 0 0 0 0'
  end
  return fmt('o %d 0 0 0 0 0 0 %s', held, num(open_wait()))
end

return fmt('h 0 0 0 0 0 %d %d 0', in_flight, succeeded)
