-- wrk script: POST {"ShopNo":..., "PayToken":...} with a PayToken unique per request.
-- A token is 64 lowercase hex: a run prefix (16), the thread id (8), a per-thread counter (40 digits).
-- Usage: wrk -t2 -c16 -d10s -s bench/post_tokens.lua http://127.0.0.1:PORT/qpay/backend -- PREFIX SHOPNO
-- The done() hook prints one line "WRK_JSON {...}" that bench/loadgen.py reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)  -- becomes the global `tid` in that thread's state, before init()
end

local counter = 0
local prefix = "0000000000000000"
local shop = "NA0001_001"

function init(args)
  if args[1] then prefix = args[1] end
  if args[2] then shop = args[2] end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local token = prefix .. string.format("%08x", tid) .. string.format("%040d", counter)
  local body = '{"ShopNo":"' .. shop .. '","PayToken":"' .. token .. '"}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
