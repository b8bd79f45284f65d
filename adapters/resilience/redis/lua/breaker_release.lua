-- The call's outcome does not count: a half-open probe gives its slot back.
-- ARGV[2]  the permit's epoch
-- Returns  "-"

if tonumber(arg) ~= epoch or st ~= HALF or in_flight <= 0 then
  return '-'
end
in_flight = in_flight - 1
save_state()
expire()
return '-'
