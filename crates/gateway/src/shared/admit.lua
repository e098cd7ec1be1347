-- Admits one request, atomically: its rate limits in every scope and its
-- hold against the user's balance and the key's spending limit, all taken
-- or none. Redis runs a script alone, so no other instance's request can
-- come between the checks and the takes. Times are Redis's own clock: the
-- instances' clocks need not agree.
--
-- KEYS, per scope i = 1..n: [2i-1] its GCRA state (hash: r = requests TAT,
--   t = tokens TAT, in microseconds), [2i] its concurrency leases (sorted
--   set: lease id scored by its expiry in ms). Then, with a hold: the
--   user's figures, holds and amounts, and the key's (holds.lua). Last,
--   the request's ticket: present while it has tokens or a lease to give
--   back, so that settle.lua gives them back once, and only if taken.
-- ARGV: [1] n, [2] tokens estimated, [3] lease id, [4] lease ttl (ms);
--   per scope i, at 4 + 3(i-1): rpm, tpm, concurrency (0: not limited);
--   then at h = 5 + 3n: hold amount (-1: no hold), hold member, hold ttl
--   (ms), the user's balance and revision, the key's max fee, used fee and
--   revision (the figures the instance read; kept only when newer than
--   what Redis has), and whether they were just read from the database.
-- Returns {0, rpm limit, remaining, reset ms, tpm limit, remaining, reset ms}
--   (the tightest of each kind; limit 0: none), or {1, scope i, kind
--   (1 requests, 2 tokens, 3 concurrency), retry after ms (-1: never)}, or
--   {2} (the balance cannot cover the hold), or {3} (the key's limit), or
--   {4}: Redis knows nothing of the user or key (first use, expired, or a
--   restarted Redis) and the figures given may be stale (an auth cache's):
--   the instance reads the database's and calls again. Nothing is taken.
--
-- Lua numbers are doubles: counts and times are exact; balances compare
-- exactly below 2^53 nano-USD (9 million USD). Every amount written is
-- passed through as the instance's decimal string, never recomputed.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now / 1000)
local PERIOD = 60000000

local function span(units, limit)
  return math.floor(units * PERIOD / limit)
end
local function remaining(tat, limit)
  return math.floor((PERIOD - math.max(0, tat - now)) * limit / PERIOD)
end

-- Takes `cost` units at `limit` per minute from `tat`: the new TAT, or nil
-- and the wait in ms (-1: never fits).
local function take(tat, limit, cost)
  local needed = span(cost, limit)
  if needed > PERIOD then
    return nil, -1
  end
  local new = math.max(tat, now) + needed
  local allowed = new - PERIOD
  if allowed > now then
    return nil, math.ceil((allowed - now) / 1000)
  end
  return new, 0
end

local n = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local lease = ARGV[3]
local lease_ttl = tonumber(ARGV[4])
local h = 5 + 3 * n
local amount = tonumber(ARGV[h])
local hold_keys = 2 * n

if amount >= 0 and ARGV[h + 8] ~= '1' then
  if redis.call('EXISTS', KEYS[hold_keys + 1]) == 0 or redis.call('EXISTS', KEYS[hold_keys + 3]) == 0 then
    return {4}
  end
end

-- Phase 1: every limit checked; nothing written but expired leases.
local states = {}
local best = {0, 0, 0, 0, 0, 0}
local function tighten(at, limit, tat)
  local left = remaining(tat, limit)
  if best[at] == 0 or left < best[at + 1] then
    best[at] = limit
    best[at + 1] = left
    best[at + 2] = math.ceil(math.max(0, tat - now) / 1000)
  end
end
for i = 1, n do
  local base = 4 + 3 * (i - 1)
  local rpm = tonumber(ARGV[base + 1])
  local tpm = tonumber(ARGV[base + 2])
  local concurrency = tonumber(ARGV[base + 3])
  local gcra = redis.call('HMGET', KEYS[2 * i - 1], 'r', 't')
  local r = tonumber(gcra[1]) or 0
  local t = tonumber(gcra[2]) or 0
  if rpm > 0 then
    local wait
    r, wait = take(r, rpm, 1)
    if not r then
      return {1, i, 1, wait}
    end
  end
  if tpm > 0 then
    local wait
    t, wait = take(t, tpm, tokens)
    if not t then
      return {1, i, 2, wait}
    end
  end
  if concurrency > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now_ms)
    if redis.call('ZCARD', KEYS[2 * i]) >= concurrency then
      return {1, i, 3, 1000}
    end
  end
  states[i] = {rpm, tpm, concurrency, r, t}
end

-- The hold: against the figures of the newest revision, less what expired.
if amount >= 0 then
  local user, user_holds, user_amounts = KEYS[hold_keys + 1], KEYS[hold_keys + 2], KEYS[hold_keys + 3]
  local key, key_holds, key_amounts = KEYS[hold_keys + 4], KEYS[hold_keys + 5], KEYS[hold_keys + 6]
  purge(user, user_holds, user_amounts, now_ms)
  purge(key, key_holds, key_amounts, now_ms)
  refresh(user, user_holds, user_amounts, ARGV[h + 4], {'bal', ARGV[h + 3], 'rev', ARGV[h + 4]}, now_ms)
  refresh(key, key_holds, key_amounts, ARGV[h + 7],
    {'max', ARGV[h + 5], 'used', ARGV[h + 6], 'rev', ARGV[h + 7]}, now_ms)
  local u = redis.call('HMGET', user, 'bal', 'held')
  if tonumber(u[1]) - (tonumber(u[2]) or 0) < amount then
    return {2}
  end
  local k = redis.call('HMGET', key, 'max', 'used', 'held')
  local max = tonumber(k[1])
  if max ~= 0 and tonumber(k[2]) + (tonumber(k[3]) or 0) + amount > max then
    return {3}
  end
  -- Taken: figures and holds live as long as a hold may.
  local id = ARGV[h + 1]
  local expires = int(now_ms + tonumber(ARGV[h + 2]))
  local keep = 2 * tonumber(ARGV[h + 2])
  for _, place in ipairs({{user, user_holds, user_amounts}, {key, key_holds, key_amounts}}) do
    redis.call('ZADD', place[2], expires, id)
    redis.call('HSET', place[3], id, ARGV[h])
    if ARGV[h] ~= '0' then
      redis.call('HINCRBY', place[1], 'held', ARGV[h])
    end
    for _, k in ipairs(place) do
      redis.call('PEXPIRE', k, keep)
    end
  end
end

-- Phase 2: every limit taken.
local gives_back = false
for i = 1, n do
  local rpm, tpm, concurrency, r, t = unpack(states[i])
  local state = KEYS[2 * i - 1]
  if rpm > 0 or tpm > 0 then
    redis.call('HSET', state, 'r', int(r), 't', int(t))
    redis.call('PEXPIRE', state, math.ceil((math.max(r, t) - now) / 1000) + 1000)
  end
  if rpm > 0 then
    tighten(1, rpm, r)
  end
  if tpm > 0 then
    tighten(4, tpm, t)
  end
  if concurrency > 0 then
    redis.call('ZADD', KEYS[2 * i], int(now_ms + lease_ttl), lease)
    redis.call('PEXPIRE', KEYS[2 * i], lease_ttl)
  end
  if tpm > 0 or concurrency > 0 then
    gives_back = true
  end
end
if gives_back then
  redis.call('SET', KEYS[#KEYS], '1', 'PX', lease_ttl)
end
return {0, best[1], best[2], best[3], best[4], best[5], best[6]}
