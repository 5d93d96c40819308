-- One greyd request: store.Transition (internal/store/transition.go),
-- translated line by line, run atomically by Redis. Change both together:
-- store/storetest runs the same cases against this script and against
-- the Go function.
--
-- KEYS[1]  the schema key; KEYS[2] the count buckets (below); KEYS[3]
--          the triplet key; then the client (auto-whitelist) key if
--          ARGV[8] == "1"; then the second triplet key (lookup_by "auto")
--          if ARGV[9] == "1"; then the trap key if ARGV[11] == "1"; then
--          the tarpit key if ARGV[14] == "1".
-- ARGV     now, fixed_now, delay, retry_window, max_age, awl_clients,
--          dry_run, has_client, has_alt, hold, has_trap, trap_hit,
--          trap_for, has_tarpit, tarpit_op (store.TarpitOp), session,
--          keep, abandon_delay, has_triplet (0: KEYS[3] is not read, a
--          DATA step that only clears its mark): integers in decimal,
--          flags 0/1.
-- Returns  outcome, now, first, missing, waited, via_alt,
--          newly_whitelisted, future_corrected, trapped, trap_set,
--          trap_until, tarpit (store.TarpitResult), then the state
--          before the step: client found, count, last; triplet found,
--          first, last; second key found, first, last; trap found, since,
--          until; tarpit mark found, since, session. Flags are 0/1 (a Lua
--          false would end the reply).
--
-- Numbers are Lua doubles: exact for every Unix time and count greyd uses
-- (and for Unix milliseconds), and for every stored number parse accepts.
--
-- Count buckets (store.Admin.Counts, admin.go, without a scan): KEYS[2] is
-- a hash whose field "t:<H>" ("c:<H>", "x:<H>") is the number of triplet
-- (client, trap) keys that expire in hour H (Unix milliseconds / 3600000). Every write
-- moves its key from the bucket of its old deadline (PTTL) to the bucket
-- of its new one; a key that Redis expires stays counted until its hour
-- is over, and past hours are dropped when a new bucket appears. admin.lua
-- keeps the same buckets for imports and deletes: change both together.

local SCHEMA = '1'            -- schemaVersion in redis.go
local AWL_INTERVAL = 3600     -- store.AWLInterval
local REFRESH_INTERVAL = 60   -- store.RefreshInterval
local GREYLISTED, FIRST_PASS, PASSED, AUTO_WHITELISTED = 1, 2, 3, 4 -- store.Outcome

local dry = ARGV[7] == '1'
local HOUR_MS = 3600000

-- Redis's clock: the decision's time unless policy_test_time, and always
-- the deadlines (a TTL counts on Redis's clock). Redis 7 replicates a
-- script's effects, not the script, so TIME before a write is allowed;
-- older servers need replicate_commands, called before any write.
local nowSec, nowMs = 0, 0
if not dry or ARGV[2] ~= '1' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  nowSec = tonumber(t[1])
  nowMs = nowSec * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The schema key is also checked at connect; checking it here too covers a
-- Redis that restarted empty (or another greyd version that took it over)
-- while this one kept its connection.
local schema = redis.call('GET', KEYS[1])
if not schema then
  if not dry then redis.call('SET', KEYS[1], SCHEMA) end
elseif schema ~= SCHEMA then
  return redis.error_reply('GREYDSCHEMA ' .. KEYS[1] .. ' is "' .. schema .. '", this greyd uses schema ' .. SCHEMA)
end

local now = nowSec -- one clock for every MX host sharing this Redis
if ARGV[2] == '1' then
  now = tonumber(ARGV[1]) -- policy_test_time
end
local delay, retry, maxAge, awlClients = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

-- parse is store.ParseValue (value.go), translated: "a,b", each an
-- optional '-' and 1 to 19 digits of magnitude at most 2^53-1
-- (store.MaxValue: a double holds it exactly, so Lua reads the number Go
-- reads); nil for anything else. admin.lua has the same: change all three
-- together.
local MAX_VALUE = 9007199254740991
local function number(s)
  local digits = string.match(s, '^%-?(%d+)$')
  if not digits or #digits > 19 then return nil end
  local n = tonumber(s)
  if n > MAX_VALUE or n < -MAX_VALUE then return nil end
  return n
end
local function parse(v)
  local a, b = string.match(v, '^([^,]*),(.*)$')
  if not a then return nil end
  a, b = number(a), number(b)
  if not a or not b then return nil end
  return a, b
end

-- read returns found, a, b of a "a,b" value; anything else is not found,
-- as on buntdb. exists[key] records that the key is there (malformed or
-- not), so that a write knows there is an old deadline to uncount.
local exists = {}
local function read(key)
  local v = redis.call('GET', key)
  if v then
    exists[key] = true
    local a, b = parse(v)
    if a then return true, a, b end
  end
  return false, 0, 0
end

-- prune drops the buckets of past hours: they count keys Redis has
-- removed. It runs when a bucket appears, about once an hour per kind on
-- a busy site, and reads a field per hour of max_age.
local function prune()
  local cur = math.floor(nowMs / HOUR_MS)
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local h = tonumber(string.sub(f, 3))
    if h and h < cur then redis.call('HDEL', KEYS[2], f) end
  end
end

-- bucket is the field counting keys of kind ('t' or 'c') whose deadline
-- is the Unix millisecond ms.
local function bucket(kind, ms)
  return kind .. ':' .. string.format('%d', math.floor(ms / HOUR_MS))
end

-- write stores "a,b" under key for ttl seconds and moves the key between
-- count buckets. (PX, not PXAT: any Redis since 2.6 has it. The deadline
-- Redis keeps and the one bucketed here differ by the microseconds
-- between TIME and the SET, which matter only at an hour's boundary, and
-- then for that hour.)
-- oldBucket is the bucket key is counted in, from its PTTL; nil if none.
local function oldBucket(key, kind)
  local p = redis.call('PTTL', key)
  if p >= 0 then return bucket(kind, nowMs + p) elseif p == -1 then return kind .. ':-' end
  return nil
end

local function write(key, kind, a, b, ttl)
  if dry then return end
  local old = nil
  if exists[key] then old = oldBucket(key, kind) end
  redis.call('SET', key, string.format('%d,%d', a, b), 'PX', string.format('%d', ttl * 1000))
  local new = bucket(kind, nowMs + ttl * 1000)
  if old ~= new then
    if old then redis.call('HINCRBY', KEYS[2], old, -1) end
    if redis.call('HINCRBY', KEYS[2], new, 1) == 1 then prune() end
  end
end

local hasClient = ARGV[8] == '1'
local tripletKey = KEYS[3]
local clientKey, altKey = nil, nil
local altIndex = 4
if hasClient then clientKey, altIndex = KEYS[4], 5 end
if ARGV[9] == '1' then altKey = KEYS[altIndex] end

-- del removes key and uncounts it (a trap hit resets the client's
-- auto-whitelist progress).
local function del(key, kind)
  if dry then return end
  local old = oldBucket(key, kind)
  if redis.call('DEL', key) == 1 and old then redis.call('HINCRBY', KEYS[2], old, -1) end
end

local trapKey = nil
if ARGV[11] == '1' then
  local i = 4
  if hasClient then i = i + 1 end
  if altKey then i = i + 1 end
  trapKey = KEYS[i]
end
local trapFor = tonumber(ARGV[13])

local tarpitKey = nil
if ARGV[14] == '1' then
  local i = 4
  if hasClient then i = i + 1 end
  if altKey then i = i + 1 end
  if trapKey then i = i + 1 end
  tarpitKey = KEYS[i]
end
local tarpitOp, session, keep, abandonDelay = tonumber(ARGV[15]), tonumber(ARGV[16]), ARGV[17] == '1', tonumber(ARGV[18])
local TARPIT_ISSUE, TARPIT_DATA = 1, 2 -- store.TarpitOp
local T_ISSUED, T_SAME, T_WAITED, T_ABANDONED = 1, 2, 3, 4 -- store.TarpitResult

-- The stored state (store.State).
local cfound, ccount, clast = false, 0, 0
if clientKey then cfound, ccount, clast = read(clientKey) end
local hasTriplet = ARGV[19] == '1'
local tfound, tfirst, tlast = false, 0, 0
if hasTriplet then tfound, tfirst, tlast = read(tripletKey) end
local afound, afirst, alast = false, 0, 0
if altKey then afound, afirst, alast = read(altKey) end
local xfound, xsince, xuntil = false, 0, 0
if trapKey then xfound, xsince, xuntil = read(trapKey) end
local pfound, psince, psession = false, 0, 0
if tarpitKey then pfound, psince, psession = read(tarpitKey) end

-- The result (store.StepResult); the before* flags are r.Before's.
local first, missing, waited, viaAlt, newly, future = now, 0, 0, 0, 0, 0
local trapped, trapSet, trapUntil, tarpit = 0, 0, 0, 0
local beforeC, beforeT, beforeA, beforeX, beforeP = cfound, tfound, afound, xfound, pfound

local function flag(b) if b then return 1 end return 0 end
local function result(outcome)
  return {outcome, now, first, missing, waited, viaAlt, newly, future, trapped, trapSet, trapUntil, tarpit,
    flag(beforeC), ccount, clast, flag(beforeT), tfirst, tlast, flag(beforeA), afirst, alast,
    flag(beforeX), xsince, xuntil, flag(beforeP), psince, psession}
end

-- countUp, needsWrite and tripletTTL: as in transition.go.
local function countUp(n) return math.min(n + 1, MAX_VALUE) end

local function needsWrite(found, oldFirst, oldLast, first, now, diff, lastOK)
  if not found or oldFirst ~= first then return true end
  if diff > 0 then return false end
  if not lastOK then return true end
  return now - oldLast >= REFRESH_INTERVAL or oldLast > now
end

local function tripletTTL(diff, first, now, retry, maxAge)
  local ttl = maxAge
  if diff > 0 then
    local r = first + retry - now
    if r < ttl then ttl = r end
  end
  if ttl < 0 then ttl = 0 end
  return ttl + 1
end

-- Auto-whitelist, per exact client address.
local awl = clientKey ~= nil and awlClients > 0
local cstored = cfound -- s.ClientFound: stored, whatever its age
if cfound and now - clast > maxAge then
  cfound = false -- expired, whether or not Redis removed it yet
end
beforeC = cfound
if awl and cfound and ccount >= awlClients then
  if now >= clast + AWL_INTERVAL or clast > now then
    -- Keep-alive, at most hourly, as Postgrey.
    write(clientKey, 'c', countUp(ccount), now, maxAge + 1)
  end
  first = now
  return result(AUTO_WHITELISTED)
end

-- Greytraps, per exact client address: never for an auto-whitelisted
-- client (above). A trap hit (re)sets the trap and resets the client's
-- auto-whitelist progress; a trap still holding greylists every request.
-- Neither writes a triplet.
if trapKey and ARGV[12] == '1' then
  local untilT = now + trapFor
  write(trapKey, 'x', now, untilT, trapFor + retry + 1)
  if awl and cstored then del(clientKey, 'c') end
  first, missing, trapSet, trapUntil = now, delay, 1, untilT
  return result(GREYLISTED)
end
if xfound and now < xuntil then
  first, missing, trapped, trapUntil = now, delay, 1, xuntil
  return result(GREYLISTED)
end

-- Tarpit marks, per exact client address: one wait per session; a client
-- whose mark is another session's left during its wait and is greylisted
-- with the abandon delay while the mark lives.
local same = pfound and psession == session
local delayEff = delay
if tarpitKey and tarpitOp == TARPIT_DATA then
  if not same then
    first = now
    return result(PASSED) -- DATA is never refused
  end
  if not keep then del(tarpitKey, 'p') end
  tarpit = T_WAITED
  if not hasTriplet then
    -- The session's triplets are unknown (a restart between RCPT and
    -- DATA): only the mark goes.
    first, waited = now, now - psince
    return result(PASSED)
  end
elseif same then
  first, tarpit = now, T_SAME
  return result(PASSED)
elseif pfound then
  delayEff = math.max(delay, abandonDelay)
end

-- The triplet.
local found = tfound
if found and now - tlast > maxAge then
  found = false
end
if found and xfound and tlast - tfirst < delay and tfirst < xsince then
  found = false -- pending when its client was trapped: forgotten
end
beforeT = found
local altFound = afound -- the caller passes the second key only if it differs
if altFound and now - alast > maxAge then
  altFound = false
end
beforeA = altFound

first = now
local lastOK = false
if found then
  first = tfirst
  if tlast - tfirst >= delay then
    lastOK = true
  elseif now - first > retry then
    first = now -- stale unfinished entry: greylisting starts over
  end
  if first > now then
    future = 1
    first = now
  end
end
if tarpit == T_WAITED and not lastOK then
  first = math.min(first, now - delay) -- waited through its tarpit
end

if not lastOK and altFound and alast - afirst >= delay then
  -- The other key has passed: so has this request. Record it under the
  -- chosen key, as passed.
  local f = math.min(afirst, now - delay)
  write(tripletKey, 't', f, now, maxAge + 1)
  first, viaAlt = f, 1
  if tarpit == T_WAITED then waited = now - psince end
  return result(PASSED)
end

local diff = delayEff - (now - first)
if diff > 0 and pfound then
  tarpit = T_ABANDONED
elseif diff > 0 and tarpitKey and tarpitOp == TARPIT_ISSUE then
  -- The wait replaces the delay: no triplet is written, DATA writes it.
  write(tarpitKey, 'p', now, session, abandonDelay + retry + 1)
  missing, tarpit = diff, T_ISSUED
  return result(GREYLISTED)
end
if needsWrite(found, tfirst, tlast, first, now, diff, lastOK) and not (ARGV[10] == '1' and diff > 0) then
  write(tripletKey, 't', first, now, tripletTTL(diff, first, now, retry, maxAge))
end

if awl and diff <= 0 and not lastOK then
  -- First successful pass of this triplet: count it for the client, at
  -- most once an hour.
  if not cfound or now >= clast + AWL_INTERVAL then
    local n = 1
    if cfound then n = countUp(ccount) end
    write(clientKey, 'c', n, now, maxAge + 1)
    if n == awlClients then newly = 1 end
  end
end

if tarpit == T_WAITED then waited = now - psince end
if diff > 0 then
  missing = diff
  return result(GREYLISTED)
elseif not lastOK then
  if tarpit ~= T_WAITED then waited = now - first end
  return result(FIRST_PASS)
end
return result(PASSED)
