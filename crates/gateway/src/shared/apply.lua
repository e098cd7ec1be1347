-- The database committed a request's settlement: its hold is released and
-- the figures of the newest revision kept (the ones read after the commit,
-- which count its charge). Releasing the hold and taking figures that count
-- the charge happen together, so the charge is never counted nowhere (an
-- overspend) — at worst, briefly, twice (another instance's newer figures
-- arrived while the hold was still there), which only refuses early.
--
-- KEYS: the user's figures and holds, the key's figures and holds.
-- ARGV: [1] the hold's member ("amount:request id"), [2] its amount,
--   [3] the user's balance, [4] its revision, [5] the key's max fee,
--   [6] used fee, [7] revision, [8] how long figures are kept (ms).

local function refresh(figures, revision, fields)
  local known = tonumber(redis.call('HGET', figures, 'rev'))
  if not known or known < tonumber(revision) then
    redis.call('HSET', figures, unpack(fields))
    redis.call('PEXPIRE', figures, ARGV[8])
  end
end
refresh(KEYS[1], ARGV[4], {'bal', ARGV[3], 'rev', ARGV[4]})
refresh(KEYS[3], ARGV[7], {'max', ARGV[5], 'used', ARGV[6], 'rev', ARGV[7]})
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'held', '-' .. ARGV[2])
end
if redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'held', '-' .. ARGV[2])
end
return 0
