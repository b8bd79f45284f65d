-- The live record: {done, fingerprint, token, expires, result}, or {}.
local cur = load()
if not cur then
  return {}
end
return { cur.done and '1' or '0', cur.fp, cur.token, num(cur.expires), redis.call('HGET', key, 'r') or '' }
