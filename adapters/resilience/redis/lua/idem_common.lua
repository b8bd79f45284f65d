-- Idempotency records (resilience/idempotency/record.py, step for step).
-- One hash per record, KEYS[1] = <prefix>{<key>}: fields d (1: done),
-- f (fingerprint), t (fencing token), e (expiry, %.17g), r (result).
-- ARGV[1]: the clock ('' = server TIME); ARGV[2]: the operation's argument;
-- ARGV[3]: milliseconds every key outlives its expiry.  An expired record
-- counts as absent, whether or not Redis has dropped the key yet.

local key = KEYS[1]
local now = clock(ARGV[1])
local arg = ARGV[2]
local margin = tonumber(ARGV[3])

local function load()
  local v = redis.call('HMGET', key, 'd', 'f', 't', 'e')
  if not v[1] then
    return nil
  end
  local expires = tonumber(v[4])
  if now >= expires then
    return nil
  end
  return { done = v[1] == '1', fp = v[2], token = v[3], expires = expires }
end

-- The record if `token` holds its lease, else nil.
local function owned(token)
  local cur = load()
  if not cur or cur.done or cur.token ~= token then
    return nil
  end
  return cur
end

-- Split "<a> <b> <rest>" (rest may hold anything, spaces and binary included).
local function split2(text)
  local i = string.find(text, ' ', 1, true)
  local j = string.find(text, ' ', i + 1, true)
  if not j then
    return string.sub(text, 1, i - 1), string.sub(text, i + 1), ''
  end
  return string.sub(text, 1, i - 1), string.sub(text, i + 1, j - 1), string.sub(text, j + 1)
end
