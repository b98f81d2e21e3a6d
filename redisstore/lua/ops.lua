-- ops.lua is prepended to create.lua and update.lua. It applies the index
-- writes of a record, computed in Go from the record before and after:
-- groups of 4 arguments from ARGV[i]: name, key position in KEYS, a, b.
--   za k score member   ZADD
--   zr k _ member       ZREM
--   hi k field delta    HINCRBY (the field is removed when it reaches 0)
--   del k _ _           DEL
--   hs k field value    HSET
--   hd k field _        HDEL
-- check_ops validates them all before the first write: a script that fails
-- half way is not rolled back.
local function check_ops(i)
  while i <= #ARGV do
    local op = ARGV[i]
    if (op ~= 'za' and op ~= 'zr' and op ~= 'hi' and op ~= 'del' and op ~= 'hs' and op ~= 'hd') or KEYS[tonumber(ARGV[i + 1])] == nil or i + 3 > #ARGV then
      return false
    end
    i = i + 4
  end
  return true
end

local function apply_ops(i)
  while i <= #ARGV do
    local op, k, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
    if op == 'za' then
      redis.call('ZADD', k, a, b)
    elseif op == 'zr' then
      redis.call('ZREM', k, b)
    elseif op == 'hi' then
      if redis.call('HINCRBY', k, a, b) == 0 then
        redis.call('HDEL', k, a)
      end
    elseif op == 'del' then
      redis.call('DEL', k)
    elseif op == 'hs' then
      redis.call('HSET', k, a, b)
    elseif op == 'hd' then
      redis.call('HDEL', k, a)
    end
    i = i + 4
  end
end
