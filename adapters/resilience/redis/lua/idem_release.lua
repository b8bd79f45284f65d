-- Drop the lease `token` holds.  ARGV[2]: "<token>".  Returns 1, or 0 if lost.
if not owned(arg) then
  return 0
end
redis.call('DEL', key)
return 1
