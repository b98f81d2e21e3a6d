-- unmap_idem removes an idempotency mapping if it still names the ref.
--
-- KEYS[1]  {p:s}:i:<d>
-- ARGV[1]  the ref
-- Returns 1 when removed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
