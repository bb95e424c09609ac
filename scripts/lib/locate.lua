-- locate.lua - "routes.lua:27" for a route or a filter entry, for the messages operators read.
--
-- Lua keeps no line numbers on table constructors, so the source is scanned instead: route
-- N is the first line, after route N-1's, holding its path as a quoted string
-- (path = "/v1/orders/"), and a global filter is the first `name =` line after the first
-- `filters = {` (or a `decl.filters.name =` line). A route built by code rather than written out (a routes.lua that appends
-- to another one) has no such line; its messages then name the file and the route only.

local _M = {}
local mt = { __index = _M }

function _M.new(path)
    local lines, f = {}, io.open(path, "rb")
    if f then
        for line in f:lines() do
            lines[#lines + 1] = line
        end
        f:close()
    end
    return setmetatable({ file = path, lines = lines, route_lines = {} }, mt)
end

local function find_from(lines, first, plain)
    for i = first, #lines do
        for _, needle in ipairs(plain) do
            if lines[i]:find(needle, 1, true) then
                return i
            end
        end
    end
end

-- "file:line" (or "file") for route `index` whose declared path is `path`.
function _M:route(index, path)
    local line = self.route_lines[index]
    if line == nil and type(path) == "string" then
        local after = 1
        for i = index - 1, 1, -1 do
            if self.route_lines[i] then
                after = self.route_lines[i] + 1
                break
            end
        end
        local needles = { '"' .. path .. '"', "'" .. path .. "'" }
        line = find_from(self.lines, after, needles) or false
        self.route_lines[index] = line
    end
    return line and (self.file .. ":" .. line) or self.file
end

-- "file:line" for the global `filters = { name = ... }` entry.
function _M:filter(name)
    local start
    for i, text in ipairs(self.lines) do
        if text:find("^%s*filters%s*=%s*{") then
            start = i
            break
        end
    end
    if start then
        if self.lines[start]:find("[{,]%s*" .. name .. "%s*=") then
            return self.file .. ":" .. start
        end
        for i = start + 1, #self.lines do
            if self.lines[i]:find("^%s*" .. name .. "%s*=") then
                return self.file .. ":" .. i
            end
        end
    end
    -- A routes.lua that builds on another one: decl.filters.name = {...}
    for i, text in ipairs(self.lines) do
        if text:find("filters%." .. name .. "%s*=") or text:find("filters%[[\"']" .. name .. "[\"']%]%s*=") then
            return self.file .. ":" .. i
        end
    end
    return self.file
end

-- The message for route `index` (a compiled route or its declaration).
function _M:route_message(index, route, message)
    local method = route.method
    if type(method) == "table" then
        method = table.concat(method, ",")
    end
    return ("%s: route %d (%s %s): %s"):format(self:route(index, route.path), index, tostring(method),
                                              tostring(route.path), message)
end

return _M
