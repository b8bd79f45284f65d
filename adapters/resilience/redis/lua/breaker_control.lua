-- Operator controls: force open, force closed (both held), reset.
-- Each starts a fresh epoch; a transition is reported only if the state changes.
-- ARGV[2]  'open', 'closed' or 'reset'
-- Returns  "<transition>" or "-"

local old = st
local transition
if arg == 'open' then
  transition = enter(OPEN, 'forced_open', 1)
elseif arg == 'closed' then
  transition = enter(CLOSED, 'forced_closed', 1)
else
  transition = enter(CLOSED, 'reset', 0)
end
expire()
if st == old then
  return '-'
end
return transition
