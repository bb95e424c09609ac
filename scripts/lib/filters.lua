-- filters.lua - the filter machinery: option schemas and the chain each route runs.
--
-- A filter is a module in scripts/filters/ (Kong's plugin shape, smaller):
--   PRIORITY      integer; higher runs its before() earlier and its after() later
--   DESCRIPTION   one line for operators
--   schema        option name -> { type, default, min, max, one_of, of, match, check,
--                 required, description }; type is string | number | integer | boolean |
--                 array (elements: `of`, a type name or a spec) | map (string keys, `of` values)
--   prepare(conf) optional: turns checked options into what the steps use (parsed CIDRs...),
--                 once per route at load; returns conf or nil, err
--   before(req, conf) -> nil | response   may answer instead of the handler
--   after(req, resp, conf)                may change resp's status and headers
--   log(req, resp, conf)                  sees the final response; changes nothing
--
-- routes.lua: `filters = { name = options | true | false }` at the top applies to every
-- route (and to unmatched requests); a route's own `filters` entry is merged over it key by
-- key (true: the global options as they are; false: off for this route). Every filter's
-- options accept `priority = N` besides its schema: that filter's PRIORITY for the routes
-- the options apply to. Options are checked when routes load (start, reload, `check`), so
-- a typo never reaches a request.

local pairs, ipairs, type, tostring, pcall, require = pairs, ipairs, type, tostring, pcall, require
local format, concat, sort = string.format, table.concat, table.sort

local _M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true, array = true, map = true }
local PRIORITY_MIN, PRIORITY_MAX = -1000000, 1000000

local function describe(v)
    if type(v) == "string" then
        return format("%q", v)
    end
    return tostring(v)
end

local check_value

local function check_type(spec, v)
    local t = spec.type
    if t == "string" or t == "boolean" then
        return type(v) == t
    elseif t == "number" then
        return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
    elseif t == "integer" then
        return type(v) == "number" and v % 1 == 0 and v == v
    end
    return type(v) == "table"
end

local function element_spec(spec)
    return type(spec.of) == "string" and { type = spec.of } or spec.of
end

-- The checked value (tables are copied, so a route never shares them) or nil, err.
check_value = function(spec, v)
    if not check_type(spec, v) then
        return nil, format("must be %s, got %s", spec.type == "integer" and "an integer" or
            (spec.type == "array" and "a list" or (spec.type == "map" and "a table of name = value" or
                "a " .. spec.type)), type(v) == "table" and "a table" or describe(v))
    end
    if spec.type == "array" then
        local n, copy = #v, {}
        for k in pairs(v) do
            if type(k) ~= "number" or k % 1 ~= 0 or k < 1 or k > n then
                return nil, "must be a list {a, b, ...}"
            end
        end
        local of = element_spec(spec)
        for i = 1, n do
            local item, err = check_value(of, v[i])
            if err then
                return nil, format("item %d %s", i, err)
            end
            copy[i] = item
        end
        if spec.min and n < spec.min then
            return nil, format("needs at least %d item(s)", spec.min)
        end
        v = copy
    elseif spec.type == "map" then
        local of, copy = element_spec(spec), {}
        for k, x in pairs(v) do
            if type(k) ~= "string" then
                return nil, "must have names as keys"
            end
            local item, err = check_value(of, x)
            if err then
                return nil, format("entry %q %s", k, err)
            end
            copy[k] = item
        end
        v = copy
    else
        if spec.min and v < spec.min then
            return nil, format("must be >= %s, got %s", spec.min, v)
        elseif spec.max and v > spec.max then
            return nil, format("must be <= %s, got %s", spec.max, v)
        elseif spec.match and not v:find(spec.match) then
            return nil, format("%s is not valid%s", describe(v), spec.hint and " (" .. spec.hint .. ")" or "")
        end
        if spec.one_of then
            local found = false
            for _, allowed in ipairs(spec.one_of) do
                found = found or allowed == v
            end
            if not found then
                return nil, format("%s is not one of %s", describe(v), concat(spec.one_of, ", "))
            end
        end
    end
    if spec.check then
        local ok, err = spec.check(v)
        if not ok then
            return nil, err
        end
    end
    return v
end

local function deep_copy(v)
    if type(v) ~= "table" then
        return v
    end
    local t = {}
    for k, x in pairs(v) do
        t[k] = deep_copy(x)
    end
    return t
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = tostring(k)
    end
    sort(keys)
    return keys
end

-- Checks a filter module's own shape: a broken filter fails the load, not a request.
function _M.check_module(name, filter)
    if type(filter) ~= "table" then
        return nil, format("filters/%s.lua must return a table", name)
    elseif type(filter.PRIORITY) ~= "number" or filter.PRIORITY % 1 ~= 0 then
        return nil, format("filters/%s.lua: PRIORITY must be an integer", name)
    elseif type(filter.schema) ~= "table" then
        return nil, format("filters/%s.lua: schema must be a table (it may be empty)", name)
    elseif not (filter.before or filter.after or filter.log) then
        return nil, format("filters/%s.lua has no before, after or log step", name)
    end
    for option, spec in pairs(filter.schema) do
        if type(spec) ~= "table" or not TYPES[spec.type] or type(spec.description) ~= "string" then
            return nil, format("filters/%s.lua: schema.%s needs a type (%s) and a description", name,
                               tostring(option), concat(sorted_keys(TYPES), ", "))
        elseif option == "priority" then
            return nil, format("filters/%s.lua: 'priority' is reserved for the routes' priority override", name)
        elseif spec.default ~= nil then
            local _, err = check_value(spec, spec.default)
            if err then
                return nil, format("filters/%s.lua: schema.%s's default %s", name, option, err)
            end
        end
    end
    return true
end

-- Loads filters/<name>.lua (cached by require) and checks its shape.
function _M.load(name)
    if type(name) ~= "string" or not name:find("^[%w_]+$") then
        return nil, format("filter name %s must be a plain name (scripts/filters/<name>.lua)", describe(name))
    end
    local ok, filter = pcall(require, "filters." .. name)
    if not ok then
        if tostring(filter):find("module 'filters." .. name .. "' not found", 1, true) then
            return nil, format("unknown filter %q (no scripts/filters/%s.lua)", name, name)
        end
        return nil, format("filter %q does not load: %s", name, tostring(filter))
    end
    local valid, err = _M.check_module(name, filter)
    if not valid then
        return nil, err
    end
    return filter
end

-- Options -> (conf with defaults, priority) or nil, err. `conf` is true or a table.
function _M.check_conf(filter, conf)
    if conf == true then
        conf = {}
    elseif type(conf) ~= "table" then
        return nil, "options must be a table, true or false"
    end
    local schema, out = filter.schema, {}
    for key, v in pairs(conf) do
        if key ~= "priority" and not schema[key] then
            local known = sorted_keys(schema)
            return nil, format("unknown option %s (options: %s)", describe(key),
                               #known > 0 and concat(known, ", ") .. ", priority" or "priority only")
        end
    end
    local priority = conf.priority
    if priority == nil then
        priority = filter.PRIORITY
    elseif type(priority) ~= "number" or priority % 1 ~= 0 or priority < PRIORITY_MIN or priority > PRIORITY_MAX then
        return nil, format("option \"priority\" must be an integer between %d and %d", PRIORITY_MIN, PRIORITY_MAX)
    end
    for key, spec in pairs(schema) do
        local v = conf[key]
        if v == nil then
            if spec.required then
                return nil, format("option %q is required (%s)", key, spec.description)
            end
            out[key] = deep_copy(spec.default)
        else
            local checked, err = check_value(spec, v)
            if err then
                return nil, format("option %q %s", key, err)
            end
            out[key] = checked
        end
    end
    if filter.prepare then
        local prepared, err = filter.prepare(out)
        if not prepared then
            return nil, err
        end
        out = prepared
    end
    return out, priority
end

-- A route's options for one filter: global merged with the route's own, or false (off).
local function merge(global, own)
    if own == false or (own == nil and (global == nil or global == false)) then
        return false
    end
    if own == nil or own == true then
        return type(global) == "table" and global or true
    end
    local base = type(global) == "table" and global or {}
    if type(own) ~= "table" then
        return own -- check_conf names the mistake
    end
    local merged = {}
    for k, v in pairs(base) do
        merged[k] = v
    end
    for k, v in pairs(own) do
        merged[k] = v
    end
    return merged
end

-- The ordered chain for a route: list of { name, filter, conf, priority }, or nil plus a
-- list of errors, each { filter = name, scope = "global" | "route", message }.
-- global, own: routes.lua's top-level and route-level `filters` tables (own may be nil).
function _M.chain(global, own)
    local names, errors, list = {}, {}, {}
    for name in pairs(global or {}) do
        names[name] = true
    end
    for name in pairs(own or {}) do
        names[name] = true
    end
    local sorted = sorted_keys(names)
    for _, name in ipairs(sorted) do
        local own_conf = own and own[name]
        local scope = own_conf ~= nil and "route" or "global"
        local conf = merge(global and global[name], own_conf)
        if conf then
            local filter, err = _M.load(name)
            local checked, priority
            if filter then
                checked, priority = _M.check_conf(filter, conf)
                err = not checked and priority or nil
            end
            if err then
                errors[#errors + 1] = { filter = name, scope = scope, message = format("filter %q: %s", name, err) }
            else
                list[#list + 1] = { name = name, filter = filter, conf = checked, priority = priority }
            end
        end
    end
    if #errors > 0 then
        return nil, errors
    end
    -- Higher priority first (Kong's convention); ties by name, so the order is stable.
    sort(list, function(a, b)
        if a.priority ~= b.priority then
            return a.priority > b.priority
        end
        return a.name < b.name
    end)
    return list
end

-- The names of a chain in the order their before() runs (for specs and logs).
function _M.order(chain)
    local out = {}
    for i, entry in ipairs(chain) do
        out[i] = entry.name
    end
    return out
end

return _M
