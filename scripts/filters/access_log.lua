-- access_log filter: one info line per request (method, path, route, status, duration,
-- request id), written after the response is built, so on-call can follow any request.
-- LOG_LEVEL=warn silences it; conf.slow_ms (default 1000) also logs slower requests as warn.

local C = require("lib.core")
local log = require("lib.log")

local _M = { PRIORITY = 200000 } -- outermost: sees the whole request, filters included

function _M.check_conf(conf)
    if conf.slow_ms ~= nil and (type(conf.slow_ms) ~= "number" or conf.slow_ms < 0) then
        return nil, "slow_ms must be a number >= 0"
    end
    return true
end

function _M.before(req)
    req.ctx.access_started_ms = tonumber(C.os_monotonic_ms())
end

function _M.after(req, resp, conf)
    local elapsed = tonumber(C.os_monotonic_ms()) - (req.ctx.access_started_ms or 0)
    local fields = { method = req.method, path = req.path, status = resp.status, ms = elapsed,
                     request_id = req.request_id }
    if elapsed >= (conf.slow_ms or 1000) then
        log.warn("slow request", fields)
    else
        log.info("request", fields)
    end
end

return _M
