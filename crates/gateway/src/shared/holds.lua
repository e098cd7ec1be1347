-- Prepended to admit.lua and apply.lua: the holds of a user or a key.
-- Each has its figures (hash: `bal`, or `max` and `used`; `rev`, the
-- revision they are of; `held`, what its live holds add up to), its holds
-- (sorted set: request id scored by expiry, ms) and their amounts (hash:
-- request id -> nano-USD). Amounts go into Redis as the instance's decimal
-- strings; sums are written with `int` (exact below 2^53 nano-USD).

local function int(x)
  return string.format('%.0f', x)
end

-- What the holds live after `now_ms` add up to.
local function live_held(holds, amounts, now_ms)
  local ids = redis.call('ZRANGEBYSCORE', holds, '(' .. now_ms, '+inf')
  local sum = 0
  for first = 1, #ids, 500 do
    local chunk = {}
    for i = first, math.min(first + 499, #ids) do
      chunk[#chunk + 1] = ids[i]
    end
    for _, amount in ipairs(redis.call('HMGET', amounts, unpack(chunk))) do
      sum = sum + (tonumber(amount) or 0)
    end
  end
  return sum
end

-- Keeps the figures of the newest revision (`fields`: name, value, …);
-- revision -1 keeps what Redis has. Figures Redis did not have (first use,
-- evicted, Redis restarted) start from what their live holds add up to.
local function refresh(figures, holds, amounts, revision, fields, now_ms)
  if revision == '-1' then
    return false
  end
  local known = tonumber(redis.call('HGET', figures, 'rev'))
  if not known then
    redis.call('HSET', figures, 'held', int(live_held(holds, amounts, now_ms)), unpack(fields))
    return true
  elseif known < tonumber(revision) then
    redis.call('HSET', figures, unpack(fields))
  end
  return false
end

-- Releases the hold of request `id`, once: its amount leaves `held`.
local function release(figures, holds, amounts, id)
  if redis.call('ZREM', holds, id) == 1 then
    local amount = redis.call('HGET', amounts, id)
    redis.call('HDEL', amounts, id)
    if amount and amount ~= '0' and redis.call('EXISTS', figures) == 1 then
      redis.call('HINCRBY', figures, 'held', '-' .. amount)
    end
  end
end

-- Releases holds expired at `now_ms` (a bounded number per call: a backlog
-- is worked off over the next calls), and never lets `held` go below zero.
local function purge(figures, holds, amounts, now_ms)
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', now_ms, 'LIMIT', 0, 256)
  for _, id in ipairs(expired) do
    release(figures, holds, amounts, id)
  end
  local held = tonumber(redis.call('HGET', figures, 'held'))
  if held and held < 0 then
    redis.call('HSET', figures, 'held', '0')
  end
end

