-- claim_idem binds an idempotency key to the explicit ref of a registration.
-- The mapping lives in the shard of the ref derived from the key (the
-- namespace and the id derived from it), next to the record a key-only
-- registration would create.
--
-- KEYS[1]  {p:s}:c:<d>  record of the derived ref d
-- KEYS[2]  {p:s}:i:<d>  the mapping
-- ARGV[1]  d
-- ARGV[2]  the ref registering
-- ARGV[3]  a holder found stale (its record is gone) that may be replaced, or ''
-- Returns the ref that holds the key: ARGV[2] when it is now this registration.
if ARGV[1] ~= ARGV[2] and redis.call('EXISTS', KEYS[1]) == 1 then
  return ARGV[1]
end
local cur = redis.call('GET', KEYS[2])
if cur and cur ~= ARGV[2] and cur ~= ARGV[3] then
  return cur
end
redis.call('SET', KEYS[2], ARGV[2])
return ARGV[2]
