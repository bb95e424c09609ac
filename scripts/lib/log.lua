-- log.lua - structured log lines from Lua, through the C core's logger (one JSON object
-- per line on stderr). log.info("order created", { order_id = 7, request_id = id }).

local cjson = require("cjson.safe")
local C = require("lib.core")

local _M = {}
local LEVELS = { debug = 0, info = 1, warn = 2, error = 3 }

local function write(level, msg, fields)
    if C.os_log_enabled(level) == 0 then
        return
    end
    local record = { msg = tostring(msg) }
    if fields then
        for k, v in pairs(fields) do
            record[k] = v
        end
    end
    local line = cjson.encode(record) or ('{"msg":' .. cjson.encode(tostring(msg)) .. '}')
    -- The C logger takes the members without their braces and adds ts, level and worker.
    C.os_log_write(level, line:sub(2, -2), #line - 2)
end

for name, level in pairs(LEVELS) do
    _M[name] = function(msg, fields) write(level, msg, fields) end
end

return _M
