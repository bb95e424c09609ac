-- request_id filter: every request has an id (the host makes one); with this filter a
-- well-formed X-Request-Id from the caller (a gateway, another service) is kept, so one id
-- follows the request across services, and the id is echoed in the response.
--
-- conf: trust_incoming (default true), header (default "x-request-id")

local _M = { PRIORITY = 100000 }

local VALID = "^[%w%-_.:]+$"

function _M.check_conf(conf)
    if conf.header ~= nil and type(conf.header) ~= "string" then
        return nil, "header must be a string"
    end
    if conf.trust_incoming ~= nil and type(conf.trust_incoming) ~= "boolean" then
        return nil, "trust_incoming must be a boolean"
    end
    return true
end

function _M.before(req, conf)
    if conf.trust_incoming ~= false then
        local incoming = req:header(conf.header or "x-request-id")
        if incoming and #incoming <= 128 and incoming:find(VALID) then
            req.request_id = incoming
        end
    end
end

function _M.after(req, resp, conf)
    resp:header(conf.header or "x-request-id", req.request_id)
end

return _M
