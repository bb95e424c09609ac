-- request_id filter: every request has an id (the host makes one); with this filter a
-- well-formed X-Request-Id from the caller (a gateway, another service) is kept, so one id
-- follows the request across services, and the id is echoed in the response.

local _M = {
    PRIORITY = 100000,
    DESCRIPTION = "keeps a caller's X-Request-Id and echoes the id in the response",
    schema = {
        trust_incoming = { type = "boolean", default = true, description = "keep a well-formed incoming id" },
        header = { type = "string", default = "x-request-id", match = "^[%w%-]+$", hint = "a header name",
                   description = "the header carrying the id" },
    },
}

local VALID = "^[%w%-_.:]+$"

function _M.before(req, conf)
    if conf.trust_incoming then
        local incoming = req:header(conf.header)
        if incoming and #incoming <= 128 and incoming:find(VALID) then
            req.request_id = incoming
        end
    end
end

function _M.after(req, resp, conf)
    resp:header(conf.header, req.request_id)
end

return _M
