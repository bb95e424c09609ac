-- router.lua - compiles the route declarations of routes.lua into a trie of path
-- segments and matches requests against it.
--
-- At each node a literal segment is tried first, then an int parameter, then a
-- string parameter; if a branch fails further down, the next one is tried. A match
-- costs one hash lookup per segment; nothing is compiled per request. Int
-- parameters stop at MAX_INT = 10^14 - 1: lua-cjson writes numbers with at most 14
-- significant digits, so a larger id could not be answered back exactly (1e+14). The
-- orders API validates ids against the same limit.

local new_table = require("table.new")
local unescape = require("lib.query").unescape

local byte, find, format, match, sub = string.byte, string.find, string.format, string.match,
                                       string.sub
local concat, sort = table.concat, table.sort
local pairs, tonumber, tostring, type = pairs, tonumber, tostring, type

local SLASH = byte("/")
local INT, STRING = "int", "string"
local METHODS = { GET = true, HEAD = true, POST = true, PUT = true, PATCH = true, DELETE = true,
                  OPTIONS = true }
local DECL_FIELDS = { method = true, path = true, handler = true, filters = true, name = true }
local MAX_INT = 99999999999999

local _M = { MAX_INT = MAX_INT }
local mt = { __index = _M }

-- Per-match scratch space; match() never yields, so one set per Lua state is safe.
local segs, vals = {}, {}

local function new_node()
    return { literals = {}, int = nil, string = nil, routes = nil }
end

-- Splits a raw request path into `segs`; returns the count, or nil when the path
-- has an empty segment or more than `max_depth` segments (-1: no limit).
local function split_path(path, max_depth)
    local len = #path
    if byte(path, 1) ~= SLASH then
        return nil
    elseif len > 1 and byte(path, len) == SLASH then
        len = len - 1 -- the trailing slash is optional; "//" becomes "/" and fails below
    end
    if len == 1 then
        return #path == 1 and 0 or nil
    end
    local n, pos = 0, 2
    repeat
        local stop = (find(path, "/", pos, true) or len + 1) - 1
        if stop > len then
            stop = len
        end
        if stop < pos or n == max_depth then
            return nil
        end
        n = n + 1
        segs[n] = sub(path, pos, stop)
        pos = stop + 2
    until pos > len + 1
    return n
end

local function parse_methods(method)
    if type(method) == "string" then
        method = { method }
    elseif type(method) ~= "table" or #method == 0 then
        return nil, "'method' must be a method name or a non-empty list of them"
    end
    local list, seen = {}, {}
    for i = 1, #method do
        local m = method[i]
        if not METHODS[m] then
            return nil, format("unknown method '%s' (expected an upper-case name: GET, HEAD, "
                               .. "POST, PUT, PATCH, DELETE or OPTIONS)", tostring(m))
        elseif seen[m] then
            return nil, format("method '%s' is listed twice", m)
        end
        seen[m], list[i] = true, m
    end
    sort(list)
    return list
end

-- One pattern segment -> { kind = "literal"|INT|STRING, value = literal, name = param }.
local function parse_segment(seg)
    if not find(seg, "[{}]") then
        if not find(seg, "^[%w%-%._~!$&'()*+,;=:@]+$") then
            return nil, format("segment '%s' has a character not allowed in a path", seg)
        end
        return { kind = "literal", value = seg }
    end
    local inner = match(seg, "^{([^{}]*)}$")
    if not inner then
        if find(seg, "^{[^}]*$") then
            return nil, format("unclosed '{' in segment '%s'", seg)
        end
        return nil, format("segment '%s': a parameter must be a whole segment, like '{name}'", seg)
    elseif inner == "" then
        return nil, "empty parameter '{}': give it a name, like '{name}' or '{id:int}'"
    end
    local name, colon, ptype = match(inner, "^([%a_][%w_]*)(:?)(%a*)$")
    if not name or (colon == ":" and ptype == "") then
        return nil, format("bad parameter '%s': use '{name}' or '{name:type}'", seg)
    end
    if ptype == "" then
        ptype = (name == "id" or find(name, "_id$")) and INT or STRING
    elseif ptype ~= INT and ptype ~= STRING then
        return nil, format("parameter '%s' has unknown type '%s' (expected int or string)", name, ptype)
    end
    return { kind = ptype, name = name }
end

-- Checks the fields of a declaration; returns its sorted method list or nil, err.
local function check_decl(decl)
    for key in pairs(decl) do
        if not DECL_FIELDS[key] then
            return nil, format("unknown field '%s'", tostring(key))
        end
    end
    local path, handler = decl.path, decl.handler
    if type(path) ~= "string" or byte(path, 1) ~= SLASH then
        return nil, "'path' must be a string starting with '/'"
    elseif not ((type(handler) == "string" and handler ~= "") or type(handler) == "function") then
        return nil, "'handler' is missing (expected a name like \"orders.details\")"
    elseif decl.filters ~= nil and type(decl.filters) ~= "table" then
        return nil, "'filters' must be a table"
    elseif decl.name ~= nil and type(decl.name) ~= "string" then
        return nil, "'name' must be a string"
    end
    return parse_methods(decl.method)
end

-- Validates one declaration and adds it to the trie; returns route, depth or nil, err.
local function compile(root, decl, index)
    if type(decl) ~= "table" then
        return nil, format("invalid route #%d: expected a table, got %s", index, type(decl))
    end
    local label = format("invalid route #%d (%s)", index, tostring(decl.path))
    local methods, err = check_decl(decl)
    local n = methods and split_path(decl.path, -1)
    if not n then
        return nil, label .. ": " .. (err or "empty segment ('//')")
    end

    local route = { method = decl.method, methods = methods, path = decl.path,
                    handler = decl.handler, filters = decl.filters, name = decl.name,
                    index = index, param_names = {}, param_kinds = {} }
    local node, shape, seen = root, {}, {}
    for i = 1, n do
        local seg, kind = parse_segment(segs[i])
        if not seg then
            return nil, label .. ": " .. kind
        end
        kind = seg.kind
        if kind == "literal" then
            local child = node.literals[seg.value] or new_node()
            node.literals[seg.value], node, shape[i] = child, child, seg.value
        elseif seen[seg.name] then
            return nil, format("%s: parameter '%s' is used twice", label, seg.name)
        else
            local child = node[kind] or new_node()
            node[kind], node, shape[i], seen[seg.name] = child, child, "{" .. kind .. "}", true
            route.param_names[#route.param_names + 1] = seg.name
            route.param_kinds[#route.param_kinds + 1] = kind
        end
    end
    route.pattern = "/" .. concat(shape, "/")

    local routes = node.routes or {}
    node.routes = routes
    for i = 1, #methods do -- on failure the whole router is dropped, so no need to undo
        local other = routes[methods[i]]
        if other then
            return nil, format("%s: duplicates route #%d (%s); both are %s %s", label, other.index,
                               other.path, methods[i], route.pattern)
        end
        routes[methods[i]] = route
    end
    return route, n
end

-- Compiles `route_list`; raises naming the route (index and pattern) if one is invalid.
function _M.new(route_list)
    if type(route_list) ~= "table" then
        error("bad 'route_list' argument", 2)
    end
    local root, routes, max_depth = new_node(), {}, 0
    for i = 1, #route_list do
        local route, depth_or_err = compile(root, route_list[i], i)
        if not route then
            error(depth_or_err, 2)
        end
        local depth = depth_or_err
        routes[i] = route
        if depth > max_depth then
            max_depth = depth
        end
    end
    return setmetatable({ _root = root, _routes = routes, _max_depth = max_depth, _fixed = {} }, mt)
end

local function is_int(seg)
    return #seg <= 14 and find(seg, "^[1-9]%d*$") and tonumber(seg) <= MAX_INT
end

-- Depth-first search in priority order (literal, int, string); `k` counts params.
-- Given `allowed`, it visits every matching route and records its methods instead.
local function search(node, n, i, k, method, allowed)
    if i > n then
        local routes = node.routes
        if routes and allowed then
            for m, route in pairs(routes) do
                allowed[m] = route
            end
            return nil
        end
        return routes and (routes[method] or (method == "HEAD" and routes.GET)) or nil
    end
    local seg = segs[i]
    local child = node.literals[seg]
    local route = child and search(child, n, i + 1, k, method, allowed)
    if route then
        return route
    end
    child = node.int
    if child and is_int(seg) then
        vals[k + 1] = seg
        route = search(child, n, i + 1, k + 1, method, allowed)
        if route then
            return route
        end
    end
    child = node.string
    if child then
        vals[k + 1] = seg
        return search(child, n, i + 1, k + 1, method, allowed)
    end
    return nil
end

-- match() and lookup(); level: where a bad argument's error points.
local function find_route(self, method, path, level)
    if type(method) ~= "string" then
        error("bad 'method' argument", level)
    elseif type(path) ~= "string" then
        error("bad 'path' argument", level)
    end
    -- Matches of routes without parameters, by path and method: such a path is one the routes
    -- spell (with or without its trailing slash), so client input cannot grow this cache, and
    -- a hit splits nothing and makes no string.
    local fixed = self._fixed[path]
    local route = fixed and fixed[method]
    if route then
        return route, nil
    end
    local n = split_path(path, self._max_depth)
    if not n then
        return nil, 404
    end
    route = search(self._root, n, 1, 0, method, nil)
    if route then
        local names, kinds = route.param_names, route.param_kinds
        if #names == 0 then
            fixed = fixed or {}
            self._fixed[path], fixed[method] = fixed, route
            return route, nil
        end
        local params = new_table(0, #names)
        for j = 1, #names do
            params[names[j]] = kinds[j] == INT and tonumber(vals[j]) or unescape(vals[j])
        end
        return route, params
    end

    local allowed, list, first = {}, {}, nil
    search(self._root, n, 1, 0, method, allowed)
    if allowed.GET then
        allowed.HEAD = allowed.GET
    end
    for m, r in pairs(allowed) do
        list[#list + 1] = m
        if not first or r.index < first.index then
            first = r
        end
    end
    if #list == 0 then
        return nil, 404
    end
    sort(list)
    return nil, 405, concat(list, ", "), first
end

-- route, params | nil, 404 | nil, 405, allow ("GET, HEAD, POST"), route: the first declared
-- route the path matches under another method (its pattern labels the 405 in the metrics).
-- `path` is the raw path without the query string; parameter values get decoded.
function _M:match(method, path)
    local route, params, allow, first = find_route(self, method, path, 3)
    if route and params == nil then
        params = {}
    end
    return route, params, allow, first
end

-- match(), but a route without parameters comes with nil, not an empty table: lib.host's
-- form, so that a request makes its params table only if a script asks for it.
function _M:lookup(method, path)
    local route, params, allow, first = find_route(self, method, path, 3)
    return route, params, allow, first
end

-- A copy of the compiled route list, in declaration order.
function _M:routes()
    local list = {}
    for i = 1, #self._routes do
        list[i] = self._routes[i]
    end
    return list
end

return _M
