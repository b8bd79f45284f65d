-- Take the lease on an absent key.  ARGV[2]: "<lease> <token> <fingerprint>".
-- Returns {'acquired'}, {'replay', result}, {'reused'} or {'in_progress', retry_after}.
local lease_text, token, fp = split2(arg)
local lease = tonumber(lease_text)
local cur = load()
if not cur then
  redis.call('DEL', key) -- an expired leftover
  redis.call('HSET', key, 'd', '0', 'f', fp, 't', token, 'e', num(now + lease))
  redis.call('PEXPIRE', key, ttl_ms(lease, margin))
  return { 'acquired' }
end
if cur.fp ~= fp then
  return { 'reused' }
end
if cur.done then
  return { 'replay', redis.call('HGET', key, 'r') }
end
if cur.token == token then -- a resend of this very call (its reply was lost): still ours
  redis.call('HSET', key, 'e', num(now + lease))
  redis.call('PEXPIRE', key, ttl_ms(lease, margin))
  return { 'acquired' }
end
return { 'in_progress', num(cur.expires - now) }
