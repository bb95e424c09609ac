package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local ffi = require("ffi")
local C = require("lib.core")

-- The job's sample in the scrape the core renders, and how many samples the job has.
local function last_success(job)
    local cap = 1024 * 1024
    local buf = ffi.new("char[?]", cap)
    local len = tonumber(C.os_metrics_render(buf, cap))
    assert(len < cap)
    local prefix = 'orderservice_jobs_last_success_timestamp_seconds{job="' .. job .. '"} '
    local value, samples
    for line in ffi.string(buf, len):gmatch("[^\n]+") do
        if line:sub(1, #prefix) == prefix then
            value, samples = tonumber(line:sub(#prefix + 1)), (samples or 0) + 1
        end
    end
    return value, samples
end

local function declare(worker, jobs)
    local names, every = ffi.new("const char *[?]", #jobs), ffi.new("int64_t[?]", #jobs)
    for i, name in ipairs(jobs) do
        names[i - 1], every[i - 1] = name, 100
    end
    C.os_jobs_declare(worker, names, every, #jobs)
end

local function stalled()
    local buf = ffi.new("char[1024]")
    return ffi.string(buf, tonumber(C.os_jobs_stalled(buf, 1024)))
end

describe("job instances (core/jobs.c)", function()
    after_each(function()
        declare(0, {})
        declare(1, {})
    end)

    it("shows one sample per job: the oldest last success of its instances, 0 while one has none", function()
        declare(0, { "spec_a", "spec_b" })
        declare(1, { "spec_a" })
        C.os_job_succeeded(0, "spec_a")
        local value, samples = last_success("spec_a")
        assert.are.equal(1, samples)
        assert.are.equal(0, value) -- worker 1's instance has never completed a cycle
        C.os_job_succeeded(1, "spec_a")
        local both = last_success("spec_a")
        assert.is_true(both > 0)
        C.os_job_succeeded(0, "spec_a")
        assert.is_true(last_success("spec_a") >= both) -- now worker 1's success is the oldest
        assert.are.equal(0, (last_success("spec_b")))
    end)

    it("forgets the instances a worker no longer declares and keeps the others' history", function()
        declare(0, { "spec_a" })
        declare(1, { "spec_a" })
        C.os_job_succeeded(0, "spec_a")
        local value = last_success("spec_a")
        assert.are.equal(0, value)
        declare(1, {}) -- a reload moved the job to worker 0 only
        assert.is_true(last_success("spec_a") > 0)
        declare(0, { "spec_a" }) -- declared again by a reload: its last success stays
        assert.is_true(last_success("spec_a") > 0)
        C.os_job_succeeded(1, "spec_a") -- a retired runner's late report finds no instance
        declare(0, {})
        assert.is_nil(last_success("spec_a"))
        assert.are.equal("", stalled())
    end)
end)
