-- drop_early removes early replies (stale ones, found through {p:s}:et).
--
-- KEYS[1]   {p:s}:et      early replies by arrival
-- KEYS[2]   {p:s}:n       counters
-- KEYS[2+i] {p:s}:e:<ref>  the early replies of the ref of member i
-- ARGV[i]   member i of KEYS[1]: digest .. ' ' .. ref
-- Returns how many replies were removed.
local n = 0
for i = 1, #ARGV do
  local digest = string.match(ARGV[i], '^(%S+) ')
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 and digest and redis.call('HDEL', KEYS[2 + i], digest) == 1 then
    n = n + 1
    if redis.call('HINCRBY', KEYS[2], 'early', -1) <= 0 then
      redis.call('HDEL', KEYS[2], 'early')
    end
  end
end
return n
