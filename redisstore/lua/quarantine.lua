-- quarantine sets an undecodable record aside and drops the index entry
-- that led to it, so no pass trips on it again.
--
-- KEYS[1]  {p:s}:c:<ref>  the record
-- KEYS[2]  {p:s}:q        quarantine
-- KEYS[3]  the index the record was met through
-- ARGV[1]  ref
-- ARGV[2]  the bytes read (moved only when still the same)
-- Returns 1.
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[1], v)
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
