-- body_limit filter: refuses a request body over max_bytes with a JSON 413 before the
-- handler runs. h2o itself refuses bodies over 1 MiB before Lua sees them (its plain 413),
-- so max_bytes above that has no effect; this filter is for routes that need less.

local response = require("lib.response")

local _M = {
    PRIORITY = 5000, -- after auth: a caller without a token learns nothing about sizes
    DESCRIPTION = "JSON 413 when the request body is larger than max_bytes",
    schema = {
        max_bytes = { type = "integer", default = 65536, min = 0, max = 1048576,
                      description = "largest body accepted, in bytes (h2o's own cap is 1 MiB)" },
    },
}

function _M.before(req, conf)
    if #req.body > conf.max_bytes then
        return response.error(413, "request body too large", { max_bytes = conf.max_bytes })
    end
    return nil
end

return _M
