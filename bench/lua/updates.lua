-- Load script for wrk: POSTs status updates to EPMPulse (or to the baseline).
--
-- Arguments after "--": api_key rows batch_size
--   rows        updates cycle over this many app/domain rows (App0/D0 ...)
--   batch_size  0 posts one update per request to /api/v1/status; N > 0 posts
--               {"updates": [...]} with N updates to /api/v1/status/batch
--
-- Requests are built in init(), as wrk's SCRIPTING guide advises, so the client
-- spends its time sending. Every update changes its row (a new job id), so the
-- server never skips one as an exact repeat.

local POOL_SIZE = 200
local STATUSES = { "Loading", "OK" }
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local pool = {}
local next_index = 1

local function update_json(n, rows)
  local row = n % rows
  local visit = math.floor(n / rows)
  return string.format(
    '{"app":"App%d","domain":"D%d","status":"%s","job_id":"w%d-%d"}',
    math.floor(row / 10), row % 10, STATUSES[visit % #STATUSES + 1], thread_id, n
  )
end

function init(args)
  local key = args[1]
  local rows = tonumber(args[2])
  local batch_size = tonumber(args[3])
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }
  local n = 0
  for i = 1, POOL_SIZE * rows do
    local body
    local path = "/api/v1/status"
    if batch_size > 0 then
      if i > POOL_SIZE then break end
      local items = {}
      for j = 1, batch_size do
        items[j] = update_json(n, rows)
        n = n + 1
      end
      body = '{"updates":[' .. table.concat(items, ",") .. "]}"
      path = "/api/v1/status/batch"
    else
      body = update_json(n, rows)
      n = n + 1
    end
    pool[i] = wrk.format("POST", path, headers, body)
  end
end

function request()
  local req = pool[next_index]
  next_index = next_index % #pool + 1
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
