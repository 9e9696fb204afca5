//! The Lua scripts behind the cluster operations: one round trip each, atomic, and scored with
//! the store's clock (`TIME`), so that nodes need no synchronised clocks. Key layout: see
//! `presence-proto/src/server/cluster.rs`.

/// Stores a publication. KEYS: index, new publication key, former publication key (or the new
/// one again). ARGV: ETag, former ETag ('' for none), expiry (ms), payload, most publications
/// per presentity, channel, node, publication key prefix (`P pub:{aor}:`).
pub(crate) const PUBLISH: &str = r"
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[2] ~= '' then
  local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if s then score = tonumber(s) end
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[1], ARGV[2])
end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], score, ARGV[1])
local live = {}
for _, e in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', ARGV[8] .. e) == 1 then
    table.insert(live, e)
  else
    redis.call('ZREM', KEYS[1], e)
  end
end
local max = tonumber(ARGV[5])
local i = 1
while #live - i + 1 > max do
  redis.call('DEL', ARGV[8] .. live[i])
  redis.call('ZREM', KEYS[1], live[i])
  i = i + 1
end
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
";

/// Removes a publication. KEYS: index, publication key. ARGV: ETag, channel, node.
pub(crate) const UNPUBLISH: &str = r"
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// Reads a presentity: `{ {etag, payload, pttl, ...}, {member, ms left, ...} }`, oldest
/// publication first; prunes what expired. KEYS: index, watch set. ARGV: publication key prefix.
pub(crate) const FETCH: &str = r"
local pubs = {}
for _, e in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. e
  local v = redis.call('GET', k)
  if v then
    local ttl = redis.call('PTTL', k)
    if ttl > 0 then
      table.insert(pubs, e)
      table.insert(pubs, v)
      table.insert(pubs, ttl)
    end
  else
    redis.call('ZREM', KEYS[1], e)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local w = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local watches = {}
for i = 1, #w, 2 do
  table.insert(watches, w[i])
  table.insert(watches, tonumber(w[i + 1]) - now)
end
return {pubs, watches}
";

/// Reads one publication: `{payload, pttl}` or nil. KEYS: publication key.
pub(crate) const LOOKUP: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return nil end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return nil end
return {v, ttl}
";

/// Stores or removes a subscription dialog's record, only when none is stored or the stored one
/// starts with ARGV[3] (written by this node) or ARGV[4] (by the node this one took the dialog
/// over from; ARGV[3] again when none): another node that took it over since keeps it, and
/// the answer is 0. When the stored record was the previous node's, that node is told on its
/// channel ARGV[5] with the message ARGV[6]. KEYS: the record. ARGV: record, expiry (ms; 0
/// removes it), owner prefixes, channel, message.
pub(crate) const DIALOG: &str = r"
local v = redis.call('GET', KEYS[1])
local mine = v and string.sub(v, 1, #ARGV[3]) == ARGV[3]
local theirs = v and not mine and ARGV[4] ~= ARGV[3] and string.sub(v, 1, #ARGV[4]) == ARGV[4]
if v and not mine and not theirs then
  return 0
end
if ARGV[2] == '0' then
  if v then redis.call('DEL', KEYS[1]) end
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if theirs then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 1
";

/// Records or removes watch relations. KEYS: watch set. ARGV: dialog, expiry (ms; 0 removes),
/// channel, node, announce ('1' or '0'), then the watched presentities.
pub(crate) const WATCH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 6, #ARGV do
  local m = ARGV[i] .. '\n' .. ARGV[1]
  if ttl > 0 then
    redis.call('ZADD', KEYS[1], now + ttl, m)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1)
end
if ARGV[5] == '1' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
";
