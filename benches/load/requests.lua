-- wrk script for benches/load/run.sh and soak.sh: cycles through a request list ("METHOD PATH AUTHORIZATION"
-- per line, "%20" for a space in the Authorization value, "-" for no Authorization header), and counts the
-- statuses it gets: done() prints "status <code> <count>" lines, summed over the threads. The same script
-- drives the direct, nginx and permgate runs, so the load generator does the same work in each; the requests
-- are pre-formatted once per wrk thread.
-- Usage: [PERMGATE_PACE_MS=N] wrk ... -s requests.lua URL -- /path/to/requests.txt
-- With PERMGATE_PACE_MS, each connection waits 0.5-1.5 x PACE_MS (uniform, mean PACE_MS) before each request: a fixed
-- offered load of about connections / PACE_MS, below saturation, where latency is service time rather than
-- queueing. wrk times each request from its write, so the wait is not in the latency. (An environment
-- variable, not an argument: wrk decides whether a script paces before `init` sees the arguments.)
-- With PERMGATE_AS_AUTH_REQUEST=1 (delegated.sh's "endpoint" target), each request is asked as nginx's
-- auth_request subrequest asks permgate's decision listener: GET / naming the request in X-Original-Method
-- and X-Original-URI, with the client's Authorization.

local requests, index, threads = {}, 0, {}
local pace_ms = tonumber(os.getenv("PERMGATE_PACE_MS") or "")
local as_auth_request = os.getenv("PERMGATE_AS_AUTH_REQUEST") == "1"
statuses = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, auth = line:match("^(%S+) (%S+) (%S+)$")
    if method then
      local headers = {}
      if auth ~= "-" then headers["Authorization"] = auth:gsub("%%20", " ") end
      if as_auth_request then
        headers["X-Original-Method"] = method
        headers["X-Original-URI"] = path
        method, path = "GET", "/"
      end
      requests[#requests + 1] = wrk.format(method, path, headers)
    end
  end
  if #requests == 0 then
    error("no requests in " .. args[1])
  end
  index = math.random(#requests) - 1
end

if pace_ms then
  function delay()
    return pace_ms * (0.5 + math.random())
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d %d\n", status, count))
  end
end
