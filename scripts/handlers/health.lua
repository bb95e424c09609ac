-- health: GET /health/ answers 200 when the database answers a query and every background
-- job has completed a cycle recently (see core/jobs.c), else 503 with the reason; from
-- SIGTERM on it answers 503 "shutting down" while the server still serves (core/server.c),
-- so a load balancer stops sending traffic before the listener closes.
-- Kubernetes uses it as the readiness probe; it needs no auth.

local ffi = require("ffi")
local C = require("lib.core")
local db = require("lib.db")
local response = require("lib.response")

local _M = {}

local PING = db.statement("health_ping", "SELECT 1 AS ok")
local STALLED_CAP = 1024
local stalled_buf = ffi.new("char[?]", STALLED_CAP)

function _M.check()
    if C.os_server_draining() ~= 0 then
        return response.json(503, { status = "shutting down" })
    end
    local rows, err = db.query(PING)
    if not rows then
        return response.json(503, { status = "unhealthy", error = err.message })
    end
    local len = tonumber(C.os_jobs_stalled(stalled_buf, STALLED_CAP))
    if len > 0 then
        return response.json(503, { status = "unhealthy", error = ffi.string(stalled_buf, len) })
    end
    return response.json(200, { status = "healthy" })
end

-- Liveness: the worker's event loop answered, whatever the database is doing.
local ALIVE = { status = "alive" }
function _M.live()
    return response.json(200, ALIVE)
end

return _M
