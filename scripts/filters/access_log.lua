-- access_log filter: one info line per request (method, path, status, duration, request id,
-- and who: the principal's sub and role when auth let the request in), written once the
-- response is final, so on-call can follow any request. LOG_LEVEL=warn silences it;
-- requests slower than slow_ms are logged as warnings. Never logs headers or tokens.

local C = require("lib.core")
local log = require("lib.log")

local _M = {
    PRIORITY = 200000, -- outermost: its clock starts before every other filter
    DESCRIPTION = "one log line per request; slow ones as warnings",
    schema = {
        slow_ms = { type = "number", default = 1000, min = 0, description = "log requests slower than this as warn" },
    },
}

function _M.before(req)
    req.ctx.access_started_ms = tonumber(C.os_monotonic_ms())
end

function _M.log(req, resp, conf)
    local elapsed = tonumber(C.os_monotonic_ms()) - (req.ctx.access_started_ms or 0)
    local principal = req.principal
    local fields = { method = req.method, path = req.path, status = resp.status, ms = elapsed,
                     request_id = req.request_id, sub = principal and principal.sub,
                     role = principal and principal.role }
    if elapsed >= conf.slow_ms then
        log.warn("slow request", fields)
    else
        log.info("request", fields)
    end
end

return _M
