-- health: GET /health/ answers 200 when the database answers a query, else 503.
-- Kubernetes uses it as the readiness probe; it needs no auth.

local db = require("lib.db")
local response = require("lib.response")

local _M = {}

local PING = db.statement("health_ping", "SELECT 1 AS ok")

function _M.check()
    local rows, err = db.query(PING)
    if not rows then
        return response.json(503, { status = "unhealthy", error = err.message })
    end
    return response.json(200, { status = "healthy" })
end

-- Liveness: the worker's event loop answered, whatever the database is doing.
function _M.live()
    return response.json(200, { status = "alive" })
end

return _M
