-- wrk script: POST a JSON body read from a file, rotating over agent keys; print machine-readable figures.
-- usage: wrk ... -s bench/post.lua URL -- BODY_FILE KEY1,KEY2,...   (keys may be empty: no Authorization)
local requests_ = {}
local n = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local keys = args[2] or ""
  for key in string.gmatch(keys, "[^,]+") do
    requests_[#requests_ + 1] = wrk.format("POST", nil,
      {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
  end
  if #requests_ == 0 then
    requests_[1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
end

function request()
  n = n + 1
  return requests_[(n % #requests_) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
