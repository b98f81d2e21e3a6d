-- unindex drops an index entry whose record is gone (it was purged, or set
-- aside), unless the record exists again.
--
-- KEYS[1]  {p:s}:c:<ref>  the record
-- KEYS[2]  the index
-- ARGV[1]  ref
-- Returns 1 when the entry was dropped.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
return redis.call('ZREM', KEYS[2], ARGV[1])
