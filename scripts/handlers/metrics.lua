-- metrics: GET /metrics in Prometheus' text format, every worker's counters summed, plus
-- gauges read from the database at scrape time (orders a person must look at, the outbox
-- backlog, sagas in flight; left out while the database is unreachable, so the scrape
-- itself never fails on it). Each of those queries reads a partial index of the rows still
-- open (outbox_pending_idx, order_sagas_unfinished_idx, order_attention's open rows): cheap
-- while the backlog is small, which is when nobody needs to look.

local ffi = require("ffi")
local C = require("lib.core")
local db = require("lib.db")
local response = require("lib.response")

local _M = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local NEEDING_ATTENTION = db.statement("metrics_attention",
    "SELECT count(*) AS n FROM order_attention WHERE resolved_at IS NULL")
-- Every kind the code writes appears, at 0 when none is pending, so a series never vanishes.
local OUTBOX = db.statement("metrics_outbox", [[
  SELECT k.kind, count(o.id) AS n,
         COALESCE(extract(epoch FROM now() - min(o.created_at)), 0)::float8 AS oldest_s
    FROM unnest(ARRAY['release', 'refund', 'ship', 'ship_cancel', 'notify']) AS k(kind)
    LEFT JOIN outbox o ON o.kind = k.kind AND o.delivered_at IS NULL
   GROUP BY k.kind ORDER BY k.kind]])
local SAGAS = db.statement("metrics_sagas", "SELECT count(*) AS n FROM order_sagas WHERE finished_at IS NULL")
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
    local parts = { ffi.string(buf, len) }
    local rows = db.query(NEEDING_ATTENTION)
    if rows and rows[1] then
        parts[#parts + 1] = "# HELP orderservice_orders_needing_attention Orders flagged for a person "
            .. "(e.g. a refund never confirmed).\n# TYPE orderservice_orders_needing_attention gauge\n"
            .. ("orderservice_orders_needing_attention %d\n"):format(rows[1].n)
    end
    rows = db.query(OUTBOX)
    if rows and rows[1] then
        local oldest = 0
        parts[#parts + 1] = "# HELP orderservice_outbox_pending Outbox rows not yet delivered, by kind "
            .. "(the database's view: every replica reports the same).\n# TYPE orderservice_outbox_pending gauge\n"
        for _, r in ipairs(rows) do
            parts[#parts + 1] = ('orderservice_outbox_pending{kind="%s"} %d\n'):format(r.kind, r.n)
            oldest = math.max(oldest, tonumber(r.oldest_s) or 0)
        end
        parts[#parts + 1] = "# HELP orderservice_outbox_oldest_pending_seconds Age of the oldest undelivered "
            .. "outbox row (0: none).\n# TYPE orderservice_outbox_oldest_pending_seconds gauge\n"
            .. ("orderservice_outbox_oldest_pending_seconds %.3f\n"):format(oldest)
    end
    rows = db.query(SAGAS)
    if rows and rows[1] then
        parts[#parts + 1] = "# HELP orderservice_sagas_in_flight Create sagas not finished (running, or "
            .. "stalled until saga recovery ends them).\n# TYPE orderservice_sagas_in_flight gauge\n"
            .. ("orderservice_sagas_in_flight %d\n"):format(rows[1].n)
    end
    return response.text(200, table.concat(parts), { ["content-type"] = CONTENT_TYPE })
end

return _M
