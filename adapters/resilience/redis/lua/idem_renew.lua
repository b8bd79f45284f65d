-- Extend the lease `token` holds.  ARGV[2]: "<lease> <token>".  Returns 1, or 0 if lost.
local lease_text, token = split2(arg)
local lease = tonumber(lease_text)
if not owned(token) then
  return 0
end
redis.call('HSET', key, 'e', num(now + lease))
redis.call('PEXPIRE', key, ttl_ms(lease, margin))
return 1
