-- maintenance filter: every request on the routes it covers gets 503 with a message and
-- Retry-After, before auth or the handler run. Switch it on in routes.lua's global filters
-- (maintenance = { message = "..." }) and off for the health checks (maintenance = false),
-- or per route; hot reload makes it take effect within a poll interval.

local response = require("lib.response")

local _M = {
    PRIORITY = 60000,
    DESCRIPTION = "answers 503 with a message and Retry-After",
    schema = {
        message = { type = "string", default = "OrderService is down for maintenance",
                    description = "shown to the client" },
        retry_after = { type = "integer", default = 300, min = 0, max = 86400,
                        description = "seconds for Retry-After" },
    },
}

function _M.before(_, conf)
    return response.json(503, { error = "service unavailable", message = conf.message })
        :header("retry-after", conf.retry_after)
end

return _M
