-- Store the result if `token` still holds the lease (the fencing check).
-- ARGV[2]: "<ttl> <token> <result bytes>".  Returns 1, or 0: refused.
local ttl_text, token, result = split2(arg)
local ttl = tonumber(ttl_text)
if not owned(token) then
  return 0
end
redis.call('HSET', key, 'd', '1', 'e', num(now + ttl), 'r', result)
redis.call('PEXPIRE', key, ttl_ms(ttl, margin))
return 1
