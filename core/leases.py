"""Leases in Redis: a key held by one owner token with a TTL, taken, renewed and released atomically.

Beat's owner lock (workers/beatlock.py) and the one-sweep-pass-at-a-time lease (core/sweeplock.py)
use these two scripts, so an expiring lease can never be renewed or released by a process that no
longer holds it.
"""

from __future__ import annotations

# KEYS[1]: the lease; ARGV[1]: the owner's token; ARGV[2]: TTL in seconds. 1 if ours now, else 0.
ACQUIRE_OR_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('expire', KEYS[1], ARGV[2])
    return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return 1
end
return 0
"""
# KEYS[1]: the lease; ARGV[1]: the owner's token. Deleted only by its owner.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
