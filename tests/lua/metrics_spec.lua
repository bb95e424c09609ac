package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local ffi = require("ffi")
local C = require("lib.core")
local metrics = require("lib.metrics")

-- The whole scrape the core renders (no workers here: the main thread's cells are rendered).
local function scrape()
    local cap = 1024 * 1024
    local buf = ffi.new("char[?]", cap)
    local len = tonumber(C.os_metrics_render(buf, cap))
    assert(len < cap)
    return ffi.string(buf, len)
end

local function value_of(text, sample)
    for line in text:gmatch("[^\n]+") do
        if line:sub(1, #sample + 1) == sample .. " " then
            return tonumber(line:sub(#sample + 2))
        end
    end
end

describe("lib.metrics", function()
    describe("declarations", function()
        it("refuses bad names, label names and shapes with the reason", function()
            local cases = {
                { "counter", "9lives_total", "bad metric name" },
                { "counter", "spaced name_total", "bad metric name" },
                { "counter", "spec_requests", "ends in _total" },
                { "gauge", "spec_depth_total", "only counters end in _total" },
                { "gauge", "process_thing", "reserved" },
                { "counter", "orderservice_http_requests_total", "rendered by the core" },
                { "histogram", "spec_latency_count", "must not end in _bucket, _sum or _count" },
            }
            for _, c in ipairs(cases) do
                local ok, err = pcall(metrics[c[1]], c[2], "help")
                assert.is_false(ok, c[2])
                assert.truthy(err:find(c[3], 1, true), err)
            end
            local label_cases = {
                { { "bad-label" }, "bad label name" }, { { "__x" }, "reserved" }, { { "a", "a" }, "twice" },
                { { "job" }, "target labels" }, { { "instance" }, "target labels" },
            }
            for _, c in ipairs(label_cases) do
                local ok, err = pcall(metrics.counter, "spec_labels_total", "help", c[1])
                assert.is_false(ok)
                assert.truthy(err:find(c[2], 1, true), err)
            end
            local ok, err = pcall(metrics.histogram, "spec_le", "help", { "le" })
            assert.is_false(ok)
            assert.truthy(err:find("le", 1, true))
            ok, err = pcall(metrics.histogram, "spec_buckets", "help", nil, { buckets = { 1, 0.5 } })
            assert.is_false(ok)
            assert.truthy(err:find("must increase", 1, true))
            ok, err = pcall(metrics.counter, "spec_agg_total", "help", nil, { aggregate = "max" })
            assert.is_false(ok)
            assert.truthy(err:find("only gauges", 1, true))
            assert.has_error(function() metrics.counter(42, "help") end, "bad 'name' argument")
        end)

        it("gives the same family to the same declaration (a reload keeps counting), refuses another shape", function()
            local a = metrics.counter("spec_reloaded_total", "help", { "kind" })
            a:add(3, "x")
            local b = metrics.counter("spec_reloaded_total", "help", { "kind" })
            assert.equal(a.id, b.id)
            b:inc("x")
            assert.equal(4, value_of(scrape(), 'spec_reloaded_total{kind="x"}'))
            local ok, err = pcall(metrics.counter, "spec_reloaded_total", "help", { "other" })
            assert.is_false(ok)
            assert.truthy(err:find("already declared", 1, true))
        end)
    end)

    describe("values", function()
        it("counts, sets and observes; histograms are cumulative with +Inf, _sum and _count", function()
            local c = metrics.counter("spec_calls_total", "Calls.", { "service", "outcome" })
            c:inc("pay", "ok")
            c:add(2.5, "pay", "ok")
            c:inc("pay", "failed")
            local g = metrics.gauge("spec_depth", "Depth.")
            g:set(7)
            g:add(-2)
            local h = metrics.histogram("spec_seconds", "Time.", { "op" }, { buckets = { 0.1, 1 } })
            h:observe(0.05, "read")
            h:observe(0.5, "read")
            h:observe(3, "read")
            local text = scrape()
            assert.equal(3.5, value_of(text, 'spec_calls_total{service="pay",outcome="ok"}'))
            assert.equal(1, value_of(text, 'spec_calls_total{service="pay",outcome="failed"}'))
            assert.equal(5, value_of(text, "spec_depth"))
            assert.equal(1, value_of(text, 'spec_seconds_bucket{op="read",le="0.1"}'))
            assert.equal(2, value_of(text, 'spec_seconds_bucket{op="read",le="1"}'))
            assert.equal(3, value_of(text, 'spec_seconds_bucket{op="read",le="+Inf"}'))
            assert.equal(3.55, value_of(text, 'spec_seconds_sum{op="read"}'))
            assert.equal(3, value_of(text, 'spec_seconds_count{op="read"}'))
            assert.truthy(text:find("# TYPE spec_seconds histogram\n", 1, true))
        end)

        it("never lets a counter go down", function()
            local c = metrics.counter("spec_down_total", "help")
            c:add(2)
            c:add(-1)
            assert.equal(2, value_of(scrape(), "spec_down_total"))
        end)

        it("escapes label values and folds label sets past max_series into one overflow series", function()
            local c = metrics.counter("spec_paths_total", "help", { "path" }, { max_series = 3 })
            c:inc('a"b\\c\nd')
            for i = 1, 50 do
                c:inc("/client/path/" .. i)
            end
            local text = scrape()
            assert.equal(1, value_of(text, 'spec_paths_total{path="a\\"b\\\\c\\nd"}'))
            assert.equal(1, value_of(text, 'spec_paths_total{path="/client/path/1"}'))
            assert.equal(48, value_of(text, 'spec_paths_total{path="overflow"}'))
            local n = 0
            for _ in text:gmatch("\nspec_paths_total{") do
                n = n + 1
            end
            assert.equal(4, n)
        end)

        it("updates without allocating once a label set is known (JIT-friendly hot path)", function()
            local c = metrics.counter("spec_hot_total", "help", { "a", "b" })
            c:inc("x", "y")
            collectgarbage()
            collectgarbage("stop")
            local before = collectgarbage("count")
            for _ = 1, 10000 do
                c:inc("x", "y")
            end
            local grown = collectgarbage("count") - before
            collectgarbage("restart")
            assert.is_true(grown < 4, "grew " .. grown .. " KiB")
            assert.equal(10001, value_of(scrape(), 'spec_hot_total{a="x",b="y"}'))
        end)
    end)
end)
