-- update is the compare-and-set of every change to a stored correlation:
-- it writes the new record (or deletes it) and its index ops only when the
-- record is still the one the caller read, and publishes the event.
--
-- KEYS[1]   {p:s}:c:<ref>  the record
-- KEYS[2..] keys the ops name (indexes, counters)
-- ARGV[1]   header the caller read (144 characters: sequence, 8 recent write tokens)
-- ARGV[2]   token of this write (16 hex digits)
-- ARGV[3]   the new value, header ‖ record; '' deletes the record
-- ARGV[4]   event channel
-- ARGV[5]   event payload; '' publishes nothing
-- ARGV[6..] ops
-- Returns 'ok' (written), 'done' (this very write was sent again and is
-- already in: its token is among the record's 8 recent ones), 'moved'
-- (another write came first: read again), 'badops'.
local cur = redis.call('GETRANGE', KEYS[1], 0, 143)
if cur ~= ARGV[1] then
  if string.len(cur) == 144 then
    for i = 0, 7 do
      if string.sub(cur, 17 + 16 * i, 32 + 16 * i) == ARGV[2] then
        return 'done'
      end
    end
  end
  return 'moved'
end
if not check_ops(6) then
  return 'badops'
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
apply_ops(6)
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 'ok'
