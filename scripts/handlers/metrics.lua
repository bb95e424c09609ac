-- metrics: GET /metrics in Prometheus' text format, every worker's counters summed, plus
-- gauges read from the database (orders a person must look at; left out while the
-- database is unreachable, so the scrape itself never fails on it).

local ffi = require("ffi")
local C = require("lib.core")
local db = require("lib.db")
local response = require("lib.response")

local _M = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local NEEDING_ATTENTION = db.statement("metrics_attention",
    "SELECT count(*) AS n FROM order_attention WHERE resolved_at IS NULL")
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
    local text = ffi.string(buf, len)
    local rows = db.query(NEEDING_ATTENTION)
    if rows and rows[1] then
        text = text .. "# HELP orderservice_orders_needing_attention Orders flagged for a person "
            .. "(e.g. a refund never confirmed).\n# TYPE orderservice_orders_needing_attention gauge\n"
            .. ("orderservice_orders_needing_attention %d\n"):format(rows[1].n)
    end
    return response.text(200, text, { ["content-type"] = CONTENT_TYPE })
end

return _M
