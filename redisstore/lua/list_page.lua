-- list_page returns the next entries of the creation index of one shard
-- after a List cursor, in order: (score, id) ascending, or descending.
--
-- KEYS[1]  {p:s}:cr
-- ARGV[1]  'asc' or 'desc'
-- ARGV[2]  lowest score allowed (inclusive) or '-inf'
-- ARGV[3]  highest score allowed (inclusive) or '+inf'
-- ARGV[4]  cursor score, or '' for none
-- ARGV[5]  cursor id: entries at the cursor score up to it (asc) or down to it (desc) are skipped
-- ARGV[6]  how many entries
-- Returns id, score, id, score, ...
local want = tonumber(ARGV[6])
local lo, hi = ARGV[2], ARGV[3]
local cs = nil
if ARGV[4] ~= '' then
  cs = tonumber(ARGV[4])
  if ARGV[1] == 'asc' then
    if lo == '-inf' or tonumber(lo) < cs then lo = ARGV[4] end
  else
    if hi == '+inf' or tonumber(hi) > cs then hi = ARGV[4] end
  end
end
local out = {}
local off = 0
while #out < 2 * want do
  local batch
  if ARGV[1] == 'asc' then
    batch = redis.call('ZRANGEBYSCORE', KEYS[1], lo, hi, 'WITHSCORES', 'LIMIT', off, want)
  else
    batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], hi, lo, 'WITHSCORES', 'LIMIT', off, want)
  end
  if #batch == 0 then
    break
  end
  for i = 1, #batch, 2 do
    local id, sc = batch[i], tonumber(batch[i + 1])
    local skip = false
    if cs and sc == cs then
      if ARGV[1] == 'asc' then skip = id <= ARGV[5] else skip = id >= ARGV[5] end
    end
    if not skip and #out < 2 * want then
      table.insert(out, id)
      table.insert(out, batch[i + 1])
    end
  end
  off = off + #batch / 2
end
return out
