-- create stores a new correlation unless its ref is taken, its idempotency
-- key points elsewhere, or early replies wait for it that the caller has not
-- applied. One round trip for a registration in the common case.
--
-- KEYS[1]   {p:s}:c:<ref>  the record
-- KEYS[2]   {p:s}:e:<ref>  early replies buffered for the ref
-- KEYS[3]   {p:s}:i:<ref>  idempotency mapping of the ref (read when ARGV[5] is '1')
-- KEYS[4..] keys the ops name (indexes, counters, early-reply index)
-- ARGV[1]   token of this write (16 hex digits)
-- ARGV[2]   the value: header ‖ record
-- ARGV[3]   event channel
-- ARGV[4]   event payload; '' publishes nothing (an import)
-- ARGV[5]   '1': the ref is derived from an idempotency key; a mapping to another ref wins
-- ARGV[6]   n: how many early-reply fields the caller applied; ARGV[7..6+n] those fields
-- ARGV[7+n..] ops
-- Returns:
--   {'created'}                     stored (also when this very write is sent again)
--   {'exists', value}               the ref is taken: the stored value
--   {'redirect', ref}               the idempotency key belongs to another ref
--   {'early', field, value, ...}    early replies the caller has not applied: apply them, try again
--   {'badops'}                      malformed ops (a bug): nothing written
local cur = redis.call('GET', KEYS[1])
if cur then
  for i = 0, 7 do
    if string.sub(cur, 17 + 16 * i, 32 + 16 * i) == ARGV[1] then
      return {'created'}
    end
  end
  return {'exists', cur}
end
if ARGV[5] == '1' then
  local holder = redis.call('GET', KEYS[3])
  if holder and holder ~= '' then
    return {'redirect', holder}
  end
end
local n = tonumber(ARGV[6])
local fresh = redis.call('HLEN', KEYS[2]) ~= n
for i = 1, n do
  if fresh or redis.call('HEXISTS', KEYS[2], ARGV[6 + i]) == 0 then
    fresh = true
    break
  end
end
if fresh then
  local out = redis.call('HGETALL', KEYS[2])
  table.insert(out, 1, 'early')
  return out
end
if not check_ops(7 + n) then
  return {'badops'}
end
redis.call('SET', KEYS[1], ARGV[2])
apply_ops(7 + n)
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return {'created'}
