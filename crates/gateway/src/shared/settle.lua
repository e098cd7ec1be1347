-- A request is done: its tokens are corrected from the estimate to what it
-- used, and its concurrency leases returned — once, and only if admit.lua
-- took them (its ticket is there): a retried call, or the one undoing an
-- admission whose answer was lost to a timeout, changes nothing twice.
--
-- KEYS, per scope i = 1..n: [2i-1] its GCRA state, [2i] its leases; last,
--   the request's ticket.
-- ARGV: [1] n, [2] tokens estimated, [3] tokens used, [4] lease id; per
--   scope i, at 4 + i: its tpm (0: not limited).

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local PERIOD = 60000000
if redis.call('DEL', KEYS[#KEYS]) == 0 then
  return 0
end
local n = tonumber(ARGV[1])
local estimated = tonumber(ARGV[2])
local used = tonumber(ARGV[3])

for i = 1, n do
  local tpm = tonumber(ARGV[4 + i])
  local state = KEYS[2 * i - 1]
  if tpm > 0 and used ~= estimated then
    local tat = tonumber(redis.call('HGET', state, 't'))
    if tat then
      -- Owed tokens push the TAT on; unused ones come back, but capacity
      -- unused in the past is not banked.
      if used > estimated then
        tat = tat + math.floor((used - estimated) * PERIOD / tpm)
      else
        tat = math.max(tat - math.floor((estimated - used) * PERIOD / tpm), math.min(now, tat))
      end
      local r = tonumber(redis.call('HGET', state, 'r')) or 0
      redis.call('HSET', state, 't', string.format('%.0f', tat))
      redis.call('PEXPIRE', state, math.ceil((math.max(r, tat) - now) / 1000) + 1000)
    end
  end
  redis.call('ZREM', KEYS[2 * i], ARGV[4])
end
return 0
