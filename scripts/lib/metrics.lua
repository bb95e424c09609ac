-- metrics.lua - counters, gauges and histograms that scripts and filters declare, served by
-- /metrics with the core's own series (docs/operators.md, "Your own metrics").
--
--   local metrics = require("lib.metrics")
--   local calls = metrics.counter("shop_calls_total", "Calls to the shop, by result.", { "result" })
--   calls:inc("ok")                    -- label values in the order of the label names
--   local depth = metrics.gauge("shop_queue_depth", "Items queued.", nil, { aggregate = "max" })
--   depth:set(12)
--   local t = metrics.histogram("shop_call_seconds", "Call time.", { "result" }, { buckets = { 0.1, 1 } })
--   t:observe(0.25, "ok")
--
-- The values live in the C core (core/metric_registry.c), keyed by name and label values, so a
-- reload that declares the same metric again keeps counting where the old VM left off.
-- Each worker writes its own cells without locks; a scrape sums them (a gauge may instead
-- take the max, or the value set last, over the workers). A family holds at most max_series
-- label sets (default 100); past that, new ones count into one series labelled "overflow".
-- Declaration mistakes (bad names, a counter not ending in _total, the same name declared
-- with another shape) raise: they are caught when the script loads, not on a request.

local ffi = require("ffi")
local C = require("lib.core")

local type, select, tostring = type, select, tostring

local _M = {}

local TYPES = { counter = C.OS_METRIC_COUNTER, gauge = C.OS_METRIC_GAUGE, histogram = C.OS_METRIC_HISTOGRAM }
local AGGREGATES = { sum = C.OS_METRIC_SUM, max = C.OS_METRIC_MAX, latest = C.OS_METRIC_LATEST }
local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

local err_out = ffi.new("const char *[1]")
local values_buf = ffi.new("const char *[8]")

local family_mt = {}
family_mt.__index = family_mt

-- The series id for the label values (...), cached per VM in nested tables so a repeat
-- lookup allocates nothing.
local function series(self, ...)
    local n = self.nlabels
    if n == 0 then
        return self.only
    end
    local node = self.cache
    for i = 1, n - 1 do
        local v = select(i, ...)
        if v == nil then
            v = false
        end
        local child = node[v]
        if not child then
            child = {}
            node[v] = child
        end
        node = child
    end
    local last = select(n, ...)
    local id = node[last]
    if id then
        return id
    end
    local keep = {}
    for i = 1, n do
        local v = select(i, ...)
        keep[i] = v == nil and "" or tostring(v)
        values_buf[i - 1] = keep[i]
    end
    id = C.os_metric_series(self.id, values_buf, n)
    if last ~= nil then
        node[last] = id
    end
    return id
end
family_mt.series = series

function family_mt:inc(...)
    C.os_metric_add(series(self, ...), 1)
end

function family_mt:add(value, ...)
    C.os_metric_add(series(self, ...), value)
end

function family_mt:set(value, ...)
    C.os_metric_set(series(self, ...), value)
end

function family_mt:observe(value, ...)
    C.os_metric_observe(series(self, ...), value)
end

local function declare(kind, name, help, labels, opts)
    if type(name) ~= "string" then
        error("bad 'name' argument", 3)
    elseif type(help) ~= "string" then
        error("bad 'help' argument", 3)
    elseif labels ~= nil and type(labels) ~= "table" then
        error("bad 'labels' argument", 3)
    elseif opts ~= nil and type(opts) ~= "table" then
        error("bad 'opts' argument", 3)
    end
    labels, opts = labels or {}, opts or {}
    local nlabels = #labels
    local label_names = ffi.new("const char *[?]", nlabels + 1)
    for i = 1, nlabels do
        if type(labels[i]) ~= "string" then
            error("bad 'labels' argument: label names are strings", 3)
        end
        label_names[i - 1] = labels[i]
    end
    local aggregate = AGGREGATES[opts.aggregate or "sum"]
    if not aggregate then
        error("bad 'opts.aggregate' argument: sum, max or latest", 3)
    end
    local buckets = opts.buckets or DEFAULT_BUCKETS
    local nbuckets = kind == "histogram" and #buckets or 0
    local bounds = ffi.new("double[?]", nbuckets + 1)
    for i = 1, nbuckets do
        if type(buckets[i]) ~= "number" then
            error("bad 'opts.buckets' argument: numbers", 3)
        end
        bounds[i - 1] = buckets[i]
    end
    local max_series = opts.max_series or 0
    if type(max_series) ~= "number" or max_series < 0 or max_series % 1 ~= 0 then
        error("bad 'opts.max_series' argument", 3)
    end
    local id = C.os_metric_declare(name, help, TYPES[kind], aggregate, label_names, nlabels, bounds, nbuckets,
                                   max_series, err_out)
    if id < 0 then
        error(("cannot declare metric %s: %s"):format(name, ffi.string(err_out[0])), 3)
    end
    local self = setmetatable({ id = id, name = name, nlabels = nlabels, cache = {} }, family_mt)
    if nlabels == 0 then
        self.only = C.os_metric_series(id, nil, 0)
    end
    return self
end

-- counter(name, help, labels?, opts?): inc(...labels) / add(n, ...labels); n >= 0.
function _M.counter(name, help, labels, opts)
    return declare("counter", name, help, labels, opts)
end

-- gauge(name, help, labels?, opts?): set(v, ...labels) / add(n, ...labels);
-- opts.aggregate: "sum" (default), "max" or "latest" over the workers.
function _M.gauge(name, help, labels, opts)
    return declare("gauge", name, help, labels, opts)
end

-- histogram(name, help, labels?, opts?): observe(v, ...labels); opts.buckets: increasing
-- upper bounds (default DEFAULT_BUCKETS, in seconds).
function _M.histogram(name, help, labels, opts)
    return declare("histogram", name, help, labels, opts)
end

_M.DEFAULT_BUCKETS = DEFAULT_BUCKETS

return _M
