-- buffer keeps a reply for a ref not registered yet (an early reply).
--
-- KEYS[1]  {p:s}:c:<ref>  the record (must still be absent)
-- KEYS[2]  {p:s}:e:<ref>  early replies of the ref: digest → seq (16 digits) ‖ reply
-- KEYS[3]  {p:s}:et      early replies by arrival
-- KEYS[4]  {p:s}:n       counters ("early", "eseq")
-- ARGV[1]  digest of the reply's content (the same content is kept once)
-- ARGV[2]  the reply, encoded
-- ARGV[3]  arrival, Unix µs
-- ARGV[4]  member of the arrival index: digest .. ' ' .. ref
-- ARGV[5]  cap per ref
-- ARGV[6]  cap for the whole store
-- ARGV[7]  early replies counted in the other shards
-- Returns 'exists' (registered meanwhile: deliver to it), 'buffered' (also
-- when the same content was already held), {'per_id', n} or {'full', n}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'exists'
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 'buffered'
end
local n = redis.call('HLEN', KEYS[2])
if n >= tonumber(ARGV[5]) then
  return {'per_id', n}
end
local total = tonumber(redis.call('HGET', KEYS[4], 'early') or '0') + tonumber(ARGV[7])
if total >= tonumber(ARGV[6]) then
  return {'full', total}
end
local seq = redis.call('HINCRBY', KEYS[4], 'eseq', 1)
redis.call('HSET', KEYS[2], ARGV[1], string.format('%016d', seq) .. ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], 'early', 1)
return 'buffered'
