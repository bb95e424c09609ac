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
    local adds = {}
    for i, name in ipairs(names) do
        adds[i] = { lower(name), conf.add[name] }
    end
    -- decided: name as a response spells it -> whether it is dropped; nearly every name is a
    -- constant in the code, so a request lower-cases (and interns) none. Bounded, in case a
    -- script makes names from input.
    conf.drop, conf.adds, conf.decided, conf.ndecided = drop, adds, {}, 0
    return conf
end

local DECIDED_MAX = 256

local function dropped(conf, name)
    local d = conf.decided[name]
    if d == nil then
        d = conf.drop[lower(name)] == true
        if conf.ndecided < DECIDED_MAX then
            conf.decided[name], conf.ndecided = d, conf.ndecided + 1
        end
    end
    return d
end

-- In place, adding the pairs prepare() built (their names and values checked once): a request
-- allocates no pair here.
function _M.after(_, resp, conf)
    local headers, kept = resp.headers, 0
    local n = #headers
    for i = 1, n do
        local h = headers[i]
        if not dropped(conf, h[1]) then
            kept = kept + 1
            headers[kept] = h
        end
    end
    for i = n, kept + 1, -1 do
        headers[i] = nil
    end
    local adds = conf.adds
    for i = 1, #adds do
        headers[kept + i] = adds[i] -- shared by every response: a pair is replaced, never changed
    end
end

return _M
