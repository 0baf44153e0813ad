-- wrk script: POST a JSON body read from a file, rotating over agent keys; print machine-readable figures.
-- usage: wrk ... -s bench/post.lua URL -- BODY_FILE KEY1,KEY2,... [WIRE]
-- keys may be empty (no credential); WIRE "chat" (default) or "responses" sends keys as Authorization: Bearer,
-- "messages" as x-api-key, with anthropic-version on every request, as an Anthropic client does.
local requests_ = {}
local n = 0

local function headers(wire, key)
  local h = {["Content-Type"] = "application/json"}
  if wire == "messages" then
    h["anthropic-version"] = "2023-06-01"
    if key then h["x-api-key"] = key end
  elseif key then
    h["Authorization"] = "Bearer " .. key
  end
  return h
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local keys = args[2] or ""
  local wire = args[3] or "chat"
  for key in string.gmatch(keys, "[^,]+") do
    requests_[#requests_ + 1] = wrk.format("POST", nil, headers(wire, key), body)
  end
  if #requests_ == 0 then
    requests_[1] = wrk.format("POST", nil, headers(wire, nil), body)
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
