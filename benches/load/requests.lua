-- wrk script for benches/load/run.sh: cycles through requests.txt ("METHOD PATH TOKEN" per line), each
-- sent with "Authorization: Bearer TOKEN". The same script drives the direct, nginx and permgate runs, so
-- the load generator does the same work in each; the requests are pre-formatted once per wrk thread.
-- Usage: wrk ... -s requests.lua URL -- /path/to/requests.txt

local requests = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, path, token = line:match("^(%S+) (%S+) (%S+)$")
    if method then
      requests[#requests + 1] = wrk.format(method, path, { ["Authorization"] = "Bearer " .. token })
    end
  end
  if #requests == 0 then
    error("no requests in " .. args[1])
  end
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end
