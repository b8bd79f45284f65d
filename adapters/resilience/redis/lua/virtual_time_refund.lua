-- Give back cost admitted earlier (a cancelled shaped waiter).  Mirrors
-- _VirtualTime.refund and MemoryTable.refund: a state that falls back to
-- "full" is deleted.
--
-- KEYS[1]  state
-- ARGV     now ('' = server TIME), cost, packed {interval, ttl margin ms}

local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local interval, margin = unpack_state(ARGV[3])
local key = KEYS[1]

local state = redis.call('GET', key)
if not state then
  return 0
end
local back = unpack_state(state) - cost * interval
if back > now then
  redis.call('SET', key, pack(back), 'PX', ttl_ms(back - now, margin))
else
  redis.call('DEL', key)
end
return 1
