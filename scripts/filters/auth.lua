-- auth filter: a valid bearer token is required (issue 10). The token comes from the
-- Authorization header only (a token in the query string ends up in access logs and
-- browser history, so it is ignored); core/jwt.c verifies it (lib/jwt.lua) and the caller
-- becomes req.principal = { sub, role, customer_id } (lib/principal.lua).
--   no token:          401, WWW-Authenticate: Bearer realm="orderservice"
--   a token, invalid:  401, ... error="invalid_token", error_description="<static reason>"
--   role not in roles: 403
-- Exempt routes switch the filter off in routes.lua (auth = false); exempt_prefixes covers
-- paths that have no route here (the API docs), so they get their 404, not a 401.

local jwt = require("lib.jwt")
local principal = require("lib.principal")
local response = require("lib.response")

local find, match, sub = string.find, string.match, string.sub

local _M = {
    PRIORITY = 10000, -- after request_id (the 401 carries the id), before anything that costs
    DESCRIPTION = "requires a valid bearer token; per route, the roles allowed",
    schema = {
        roles = { type = "array", of = { type = "string", one_of = principal.ROLE_NAMES },
                  description = "roles allowed on the route (default: any valid token)" },
        exempt_prefixes = { type = "array", of = { type = "string", match = "^/", hint = "a path starting with /" },
                            default = {}, description = "path prefixes served without a token" },
        realm = { type = "string", default = "orderservice", match = "^[%w%-_. ]+$", hint = "letters, digits, - _ .",
                  description = "the realm named in WWW-Authenticate" },
    },
}

function _M.prepare(conf)
    if conf.roles then
        local set = {}
        for _, role in ipairs(conf.roles) do
            set[role] = true
        end
        conf.role_set = set
    end
    return conf
end

local function unauthorized(conf, reason)
    local challenge = ('Bearer realm="%s"'):format(conf.realm)
    if reason then
        challenge = challenge .. (', error="invalid_token", error_description="%s"'):format(reason)
    end
    return response.json(401, { error = reason and "invalid token" or "authentication required",
                                details = reason }):header("www-authenticate", challenge)
end

function _M.before(req, conf)
    local path = req.path
    for _, prefix in ipairs(conf.exempt_prefixes) do
        if sub(path, 1, #prefix) == prefix then
            return nil
        end
    end
    local header = req:header("authorization")
    if header == nil then
        return unauthorized(conf, nil)
    end
    local token = match(header, "^[Bb][Ee][Aa][Rr][Ee][Rr] +([%w%-_%.]+) *$")
    if token == nil then
        -- Another scheme (Basic...) or a malformed value: a credential was sent and refused.
        return unauthorized(conf, find(header, "^[Bb][Ee][Aa][Rr][Ee][Rr]") and "malformed token"
            or "Bearer token required")
    end
    if #token > jwt.MAX_TOKEN then
        return unauthorized(conf, "malformed token")
    end
    local claims, _, reason = jwt.verify(token)
    if not claims then
        return unauthorized(conf, reason)
    end
    local who, err = principal.from_claims(claims)
    if not who then
        return unauthorized(conf, err)
    end
    req.principal = who
    if conf.role_set and not conf.role_set[who.role] then
        return response.error(403, "forbidden", { role = who.role })
    end
    return nil
end

return _M
