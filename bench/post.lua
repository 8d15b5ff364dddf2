-- wrk script: POST one fixed JSON body and check every answer.
-- BENCH_BODY: file with the request body; BENCH_EXPECT: a string every correct answer contains
-- (the expected labels as compact JSON). An answer that is not 200 or lacks it is a mismatch.

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"
-- BENCH_HEADER_LENGTH: a V2 request with binary tensor data after a JSON header of that length.
local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length and header_length ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header_length
end

local expect = slurp(os.getenv("BENCH_EXPECT"))
mismatches = 0
answers = 0

function response(status, headers, body)
  answers = answers + 1
  if status ~= 200 or not string.find(body, expect, 1, true) then
    mismatches = mismatches + 1
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local mism, checked = 0, 0
  for _, t in ipairs(threads) do
    mism = mism + t:get("mismatches")
    checked = checked + t:get("answers")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"checked":%d,"mismatches":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, checked, mism))
end
