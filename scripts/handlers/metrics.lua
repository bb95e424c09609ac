-- metrics: GET /metrics in Prometheus' text format, every worker's counters summed.

local ffi = require("ffi")
local C = require("lib.core")
local response = require("lib.response")

local _M = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local capacity = 64 * 1024
local buf = ffi.new("char[?]", capacity)

-- os_metrics_render returns the length the whole text needs and wrote all of it only when
-- that is below capacity. The text can grow between two calls (another worker counts a new
-- route), so grow and render again until it fits; it cannot grow forever (the slots are a
-- fixed table), and only bytes the last call wrote are read.
function _M.scrape()
    local len = tonumber(C.os_metrics_render(buf, capacity))
    while len >= capacity do
        capacity = len + 4096
        buf = ffi.new("char[?]", capacity)
        len = tonumber(C.os_metrics_render(buf, capacity))
    end
    return response.text(200, ffi.string(buf, len), { ["content-type"] = CONTENT_TYPE })
end

return _M
