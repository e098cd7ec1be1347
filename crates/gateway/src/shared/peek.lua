-- What is left of some scopes' limits now, taking nothing.
--
-- KEYS, per scope i = 1..n: [2i-1] its GCRA state, [2i] its leases.
-- ARGV: [1] n; per scope i, at 1 + 2(i-1) + 1: rpm, tpm (0: not limited).
-- Returns, per scope, five numbers: requests remaining and reset (ms),
--   tokens remaining and reset (ms), leases in use.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now / 1000)
local PERIOD = 60000000
local out = {}
local function left(tat, limit)
  if limit == 0 then
    return 0, 0
  end
  local used = math.max(0, tat - now)
  return math.floor((PERIOD - math.min(used, PERIOD)) * limit / PERIOD), math.ceil(used / 1000)
end
for i = 1, tonumber(ARGV[1]) do
  local gcra = redis.call('HMGET', KEYS[2 * i - 1], 'r', 't')
  local r_left, r_reset = left(tonumber(gcra[1]) or 0, tonumber(ARGV[2 * i]))
  local t_left, t_reset = left(tonumber(gcra[2]) or 0, tonumber(ARGV[2 * i + 1]))
  local in_use = redis.call('ZCOUNT', KEYS[2 * i], '(' .. now_ms, '+inf')
  for _, v in ipairs({r_left, r_reset, t_left, t_reset, in_use}) do
    table.insert(out, v)
  end
end
return out
