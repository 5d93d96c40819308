-- store.Admin's writes (admin.go), each atomic in Redis: importing and
-- deleting a batch of entries, which keep step.lua's count buckets, and
-- changing the runtime whitelist, which bumps its version.
--
-- ARGV[1] is the operation:
--   import    KEYS: schema, count buckets, then one key per entry.
--             ARGV[2] the delay; then per entry kind ('t', 'c', 'x' or 'p'), a, b,
--             expires (Unix seconds, 0 = never).
--             Returns {imported, merged}.
--   delete    KEYS: schema, count buckets, then the keys. ARGV[2] the kind.
--             Returns how many keys existed.
--   wladd     KEYS: whitelist hash, version. ARGV[2] field, ARGV[3] value.
--             Returns the old value, or nil.
--   wlremove  KEYS: whitelist hash, version. ARGV[2] field.
--             Returns the old value, or nil.
--   wlexpire  KEYS: whitelist hash. ARGV[2..] field, value pairs: each
--             field is removed if it still holds that value (an entry
--             replaced meanwhile stays). Returns nothing.
--
-- Numbers are Lua doubles: exact for every Unix time (in milliseconds
-- too) and count greyd uses, and for every number store.ValidNumber
-- accepts (admin.go refuses to import others).

local SCHEMA = '1'   -- schemaVersion in redis.go
local HOUR_MS = 3600000
local op = ARGV[1]

-- Redis's clock, in milliseconds: deadlines count on it. Before any
-- write, for servers older than Redis 7 (see step.lua).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The runtime whitelist: its version changes with every change. A Redis
-- that lost the key (restart without persistence, FLUSHALL) starts again
-- from its clock, not from 0, so that a greyd that read version n before
-- cannot mistake a new n for the one it has.
local function bump(key)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, string.format('%d', nowMs))
  end
  redis.call('INCR', key)
end

if op == 'wladd' then
  local old = redis.call('HGET', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  bump(KEYS[2])
  return old
elseif op == 'wlremove' then
  local old = redis.call('HGET', KEYS[1], ARGV[2])
  if old then
    redis.call('HDEL', KEYS[1], ARGV[2])
    bump(KEYS[2])
  end
  return old
elseif op == 'wlexpire' then
  -- Already invisible to readers: the version stays.
  for i = 2, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
      redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
  return nil
end

-- Entries: the same schema check as step.lua, so that an import never
-- writes into another layout's keys.
local schema = redis.call('GET', KEYS[1])
if not schema then
  redis.call('SET', KEYS[1], SCHEMA)
elseif schema ~= SCHEMA then
  return redis.error_reply('GREYDSCHEMA ' .. KEYS[1] .. ' is "' .. schema .. '", this greyd uses schema ' .. SCHEMA)
end

-- Count buckets, exactly as step.lua keeps them: field "<kind>:<hour of
-- the deadline>", "<kind>:-" for keys without one.
local function prune()
  local cur = math.floor(nowMs / HOUR_MS)
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local h = tonumber(string.sub(f, 3))
    if h and h < cur then redis.call('HDEL', KEYS[2], f) end
  end
end

-- bucketOf is the bucket of a key whose PTTL is p, nil if there is none.
local function bucketOf(kind, p)
  if p == -1 then return kind .. ':-' end
  if p < 0 then return nil end
  return kind .. ':' .. string.format('%d', math.floor((nowMs + p) / HOUR_MS))
end

-- move moves one key between buckets (nil: none).
local function move(old, new)
  if old == new then return end
  if old then redis.call('HINCRBY', KEYS[2], old, -1) end
  if new and redis.call('HINCRBY', KEYS[2], new, 1) == 1 then prune() end
end

if op == 'delete' then
  local kind = ARGV[2]
  local n = 0
  for i = 3, #KEYS do
    local p = redis.call('PTTL', KEYS[i])
    if p ~= -2 then
      n = n + redis.call('UNLINK', KEYS[i])
      move(bucketOf(kind, p), nil)
    end
  end
  return n
end

if op ~= 'import' then
  return redis.error_reply('unknown operation ' .. tostring(op))
end

-- parse is store.ParseValue, as in step.lua: change all three together.
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

-- store.Merge, translated: old stored, new imported.
local function merge(kind, oa, ob, na, nb, delay)
  if kind == 't' then
    local oldPassed, newPassed = ob - oa >= delay, nb - na >= delay
    if newPassed and not oldPassed then return na, nb end
    if oldPassed and not newPassed then return oa, ob end
    return math.min(oa, na), math.max(ob, nb)
  end
  if kind == 'x' then return math.min(oa, na), math.max(ob, nb) end
  if kind == 'p' then return oa, ob end -- a tarpit mark: the stored one
  return math.max(oa, na), math.max(ob, nb)
end

local delay = tonumber(ARGV[2])
local imported, merged = 0, 0
for i = 3, #KEYS do
  local j = 3 + (i - 3) * 4
  local kind, a, b, expires = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3])
  local deadline = expires * 1000 -- 0: never
  -- Entries past their deadline are skipped, by Redis's clock.
  if expires == 0 or deadline > nowMs then
    local key = KEYS[i]
    local old = nil
    local v = redis.call('GET', key)
    if v then
      local p = redis.call('PTTL', key)
      old = bucketOf(kind, p)
      local oa, ob = parse(v)
      if oa then
        -- Merged; the later deadline wins, and no deadline wins over
        -- any.
        a, b = merge(kind, oa, ob, a, b, delay)
        if p == -1 or expires == 0 then
          deadline = 0
        elseif p >= 0 then
          deadline = math.max(deadline, nowMs + p)
        end
        merged = merged + 1
      else
        imported = imported + 1 -- a malformed value counts as none, as on buntdb
      end
    else
      imported = imported + 1
    end
    -- SET drops the old TTL; PEXPIREAT (not SET's PXAT, Redis 6.2) sets
    -- the deadline to the millisecond, so that an export of this Redis
    -- gives the imported deadline back.
    redis.call('SET', key, string.format('%d,%d', a, b))
    if deadline == 0 then
      move(old, kind .. ':-')
    else
      redis.call('PEXPIREAT', key, string.format('%d', deadline))
      move(old, kind .. ':' .. string.format('%d', math.floor(deadline / HOUR_MS)))
    end
  end
end
return {imported, merged}
