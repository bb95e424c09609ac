-- cors filter: lets browsers on the listed origins call the API. A preflight (OPTIONS with
-- Origin and Access-Control-Request-Method) is answered here with 204, before auth (a
-- preflight never carries a token); other responses to an allowed origin get
-- Access-Control-Allow-Origin, so a browser can read even a 401. Unlisted origins get no
-- CORS headers, which is how a browser is told no.

local response = require("lib.response")

local concat, lower = table.concat, string.lower

local _M = {
    PRIORITY = 20000,
    DESCRIPTION = "CORS for browser clients on the listed origins",
    schema = {
        origins = { type = "array", min = 1, required = true,
                    of = { type = "string", match = "^[%w*][%w%-%.:/%*]*$", hint = "like https://shop.example or *" },
                    description = "allowed origins (scheme://host[:port]), or \"*\"" },
        methods = { type = "array", of = "string", default = { "GET", "POST", "PATCH", "DELETE" },
                    description = "methods a preflight may allow" },
        headers = { type = "array", of = "string",
                    default = { "authorization", "content-type", "idempotency-key", "x-request-id" },
                    description = "request headers a preflight may allow" },
        expose = { type = "array", of = "string", default = { "x-request-id", "retry-after" },
                   description = "response headers the browser may read" },
        max_age = { type = "integer", default = 600, min = 0, max = 86400,
                    description = "seconds a browser may cache a preflight" },
        credentials = { type = "boolean", default = false, description = "send Access-Control-Allow-Credentials" },
    },
}

function _M.prepare(conf)
    local set, any = {}, false
    for _, origin in ipairs(conf.origins) do
        set[lower(origin)] = true
        any = any or origin == "*"
    end
    if any and conf.credentials then
        return nil, "option \"credentials\" cannot be true with origin \"*\" (browsers refuse it)"
    end
    conf.origin_set, conf.any = set, any
    conf.methods_text, conf.headers_text = concat(conf.methods, ", "), concat(conf.headers, ", ")
    conf.expose_text = concat(conf.expose, ", ")
    return conf
end

local function allowed(req, conf)
    local origin = req:header("origin")
    if origin and (conf.any or conf.origin_set[lower(origin)]) then
        return conf.any and not conf.credentials and "*" or origin
    end
end

local function decorate(resp, conf, origin)
    resp:header("access-control-allow-origin", origin)
    if origin ~= "*" then
        resp:header("vary", "Origin")
    end
    if conf.credentials then
        resp:header("access-control-allow-credentials", "true")
    end
end

function _M.before(req, conf)
    if req.method ~= "OPTIONS" or not req:header("access-control-request-method") then
        return nil
    end
    local origin = allowed(req, conf)
    local resp = response.text(204, "")
    if origin then
        decorate(resp, conf, origin)
        resp:header("access-control-allow-methods", conf.methods_text)
            :header("access-control-allow-headers", conf.headers_text)
            :header("access-control-max-age", conf.max_age)
    end
    req.ctx.cors_preflight = true
    return resp
end

function _M.after(req, resp, conf)
    if req.ctx.cors_preflight then
        return
    end
    local origin = allowed(req, conf)
    if origin then
        decorate(resp, conf, origin)
        if conf.expose_text ~= "" then
            resp:header("access-control-expose-headers", conf.expose_text)
        end
    end
end

return _M
