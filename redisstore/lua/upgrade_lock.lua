-- upgrade_lock renews or gives up the lock of a running Upgrade, if the run
-- still holds it: one that lost it (expired while Redis was out of reach)
-- must stop, and must not free another run's lock, nor mark the prefix
-- (the lock and the meta hash share the {p:0} slot: the check and the
-- write are one step).
--
-- KEYS[1]  {p:0}:upgrade  the lock
-- KEYS[2]  {p:0}:meta
-- ARGV[1]  the run's lock value
-- ARGV[2]  "renew": ARGV[3] is the TTL to set (ms)
--          "release": delete the lock
--          "mark": set the meta hash's "upgrading" mark to ARGV[3]
--          "done": set the meta hash's schema to ARGV[3], drop its
--          "upgrading" mark, delete the lock, in one step
-- Returns 1 when the run held the lock (and did ARGV[2]), 0 when not.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif ARGV[2] == 'mark' then
  redis.call('HSET', KEYS[2], 'upgrading', ARGV[3])
elseif ARGV[2] == 'done' then
  redis.call('HSET', KEYS[2], 'schema', ARGV[3])
  redis.call('HDEL', KEYS[2], 'upgrading')
  redis.call('DEL', KEYS[1])
else
  redis.call('DEL', KEYS[1])
end
return 1
