-- headers filter: sets and removes response headers on the routes it covers, e.g. security
-- headers globally. `add` replaces a header of the same name; `remove` drops every header
-- of that name (case-insensitive). Runs its after() late, so it sees the other filters'.

local lower = string.lower

local NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"

local _M = {
    PRIORITY = 150000,
    DESCRIPTION = "adds and removes response headers",
    schema = {
        add = { type = "map", of = { type = "string", match = "^[^%z\r\n]*$", hint = "no line breaks" },
                default = {}, description = "header name = value, replacing any of that name" },
        remove = { type = "array", of = { type = "string", match = NAME, hint = "a header name" },
                   default = {}, description = "header names to drop" },
    },
}

function _M.prepare(conf)
    local drop, names = {}, {}
    for _, name in ipairs(conf.remove) do
        drop[lower(name)] = true
    end
    for name in pairs(conf.add) do
        if not name:find(NAME) then
            return nil, ("option \"add\": %q is not a header name"):format(name)
        end
        drop[lower(name)] = true
        names[#names + 1] = name
    end
    table.sort(names)
    conf.drop, conf.names = drop, names
    return conf
end

function _M.after(_, resp, conf)
    local kept, headers = {}, resp.headers
    for i = 1, #headers do
        if not conf.drop[lower(headers[i][1])] then
            kept[#kept + 1] = headers[i]
        end
    end
    resp.headers = kept
    for _, name in ipairs(conf.names) do
        resp:header(lower(name), conf.add[name])
    end
end

return _M
