-- upgrade_record writes a record moved by Upgrade under its schema 2 key,
-- with its index entries, only if that key is free: never over a record
-- already there (one this store's schema wrote, newer than the schema 1
-- value, or the same value written by an earlier, interrupted run).
--
-- It does not check the upgrade's lock ({p:0}:upgrade): that key is in
-- another slot, which a script on a Cluster cannot read. Upgrade checks the
-- lock synchronously right before sending each pipeline of these calls;
-- a run paused between that check and the send for longer than the lock's
-- TTL can still write one batch (see upgradelock.go).
--
-- KEYS[1]     {p:s}:c:<ref>  the record
-- KEYS[2..n]  the index zsets that hold the record
-- ARGV[1]     the value
-- ARGV[2]     the ref
-- ARGV[3..]   the score in KEYS[2..n], in order
-- Returns 1 when written, 0 when the key held this value already, -1 when
-- it held another (kept; nothing written).
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur == ARGV[1] then
    return 0
  end
  return -1
end
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[i + 1], ARGV[2])
end
return 1
