-- The database committed a request's settlement: its hold is released and
-- the figures of the newest revision kept (the ones read after the commit,
-- which count its charge). Releasing the hold and taking figures that count
-- the charge happen together, so the charge is never counted nowhere (an
-- overspend) — at worst, briefly, twice (another instance's newer figures
-- arrived while the hold was still there), which only refuses early. Also
-- undoes the hold of an admission whose answer was lost (revisions -1).
--
-- KEYS: the user's figures, holds and amounts; the key's (holds.lua).
-- ARGV: [1] the request id, [2] the user's balance, [3] its revision,
--   [4] the key's max fee, [5] used fee, [6] revision (-1: keep what Redis
--   has), [7] how long figures are kept (ms).

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if refresh(KEYS[1], KEYS[2], KEYS[3], ARGV[3], {'bal', ARGV[2], 'rev', ARGV[3]}, now_ms) then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
if refresh(KEYS[4], KEYS[5], KEYS[6], ARGV[6], {'max', ARGV[4], 'used', ARGV[5], 'rev', ARGV[6]}, now_ms) then
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
end
release(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
release(KEYS[4], KEYS[5], KEYS[6], ARGV[1])
return 0
