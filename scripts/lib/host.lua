-- host.lua - where every request enters Lua.
--
-- init() runs once per VM: it loads routes.lua, compiles the router, resolves every
-- handler and filter (so a typo fails the start or the reload, not a request) and returns
-- dispatch(task, method, path, started_ms). dispatch() runs in the request's own coroutine:
-- it matches the route, runs the filters' before() in priority order, the handler, then the
-- filters' after() and log() in reverse, and hands the response to the C host: its headers
-- one by one (os_response_header), then (status, body, route) as the results.
-- A Lua error anywhere becomes a 500 with the request id; the details go to the log only.

local ffi = require("ffi")
local async = require("lib.async")
local C = require("lib.core")
local filters = require("lib.filters")
local locate = require("lib.locate")
local log = require("lib.log")
local request = require("lib.request")
local response = require("lib.response")
local router_mod = require("lib.router")

local xpcall, traceback, pairs, ipairs, type, tostring = xpcall, debug.traceback, pairs, ipairs, type, tostring
local format = string.format
local cast = ffi.cast
local TASK_T = ffi.typeof("os_task_t *")
local sort = table.sort

local _M = {}

local router
local route_filters = {} -- compiled route -> ordered list of { filter = module, conf = table }
local config_of_host

-- where: "route 3" or "job outbox", for the message an operator reads on a typo.
local function resolve_handler(spec, where)
    local module_name, fn_name = spec:match("^([%w_%.]+)%.([%w_]+)$")
    if not module_name then
        error(("%s: handler %q must be module.function"):format(where, spec), 0)
    end
    local module = require("handlers." .. module_name)
    local fn = module[fn_name]
    if type(fn) ~= "function" then
        error(("%s: handlers/%s.lua has no function %q"):format(where, module_name, fn_name), 0)
    end
    return fn
end

-- A route's filter chain (lib/filters.lua: options checked, priority overrides applied,
-- ordered); raises with every problem, each naming routes.lua's file and line.
local function build_filters(defaults, own, message)
    local chain, errors = filters.chain(defaults, own)
    if not chain then
        local lines = {}
        for i, e in ipairs(errors) do
            lines[i] = message(e)
        end
        error(table.concat(lines, "\n"), 0)
    end
    return chain
end

-- Request ids: 48 random bits drawn once per VM (from getrandom, see init), the worker and a
-- counter. Replicas started in the same second, and the VM a reload builds, draw different
-- prefixes, so ids never repeat across them (short of a 2^-48 coincidence).
local id_prefix -- "<random>-<worker>-", made once: a request formats only its counter
local counter = 0
local function new_request_id()
    counter = counter + 1
    return format("%s%x", id_prefix, counter)
end

local function internal_error(req, route_name, err)
    log.error("handler failed", { request_id = req.request_id, route = route_name, error = err })
    return response.json(500, { error = "internal error", request_id = req.request_id })
end

-- before() filters in priority order (one may answer instead of the handler), then the
-- handler; req._before_ran counts the before() steps started, for run's after() steps.
local function answer(chain, handler, route_name, req)
    for i = 1, #chain do
        req._before_ran = i
        local before = chain[i].filter.before
        local resp = before and before(req, chain[i].conf)
        if resp then
            return resp
        end
    end
    local resp = handler(req)
    if type(resp) ~= "table" or not resp.status then
        error("handler for " .. route_name .. " returned no response", 0)
    end
    return resp
end

-- answer(), then after() filters in reverse. A Lua error in a filter or the handler becomes
-- a 500, and the after() filters still see it (so the 500 carries the request id too).
-- No closure per request: the JIT compiles none.
local function run(chain, handler, route_name, req)
    req._before_ran = 0
    local ok, resp = xpcall(answer, traceback, chain, handler, route_name, req)
    local err, ran = resp, req._before_ran
    if not ok and err == async.CANCELLED then
        -- the client went away (async.wait): nobody reads this answer
        log.debug("request abandoned: client gone", { request_id = req.request_id, route = route_name })
        resp = response.json(499, { error = "client gone", request_id = req.request_id })
    elseif not ok then
        resp = internal_error(req, route_name, err)
    end
    for i = ran, 1, -1 do
        local f = chain[i]
        if f.filter.after then
            ok, err = xpcall(f.filter.after, traceback, req, resp, f.conf)
            if not ok then
                resp = internal_error(req, route_name, err)
            end
        end
    end
    -- log() sees the final response; a failure there is logged and changes nothing.
    for i = ran, 1, -1 do
        local f = chain[i]
        if f.filter.log then
            ok, err = xpcall(f.filter.log, traceback, req, resp, f.conf)
            if not ok then
                log.error("filter log step failed", { filter = f.name, request_id = req.request_id, error = err })
            end
        end
    end
    return resp
end

local function not_found(req)
    return response.error(404, "not found", { path = req.path })
end

local function method_not_allowed(req)
    return response.error(405, "method not allowed", { allow = req._allow }):header("allow", req._allow)
end

-- The response's { name, value } pairs into h2o's response; a pair that is not two strings (or
-- numbers) is skipped. Nothing to do once the client has gone.
local function send_headers(task_addr, headers)
    local task = cast(TASK_T, task_addr)
    for i = 1, #headers do
        local h = headers[i]
        if type(h) == "table" then
            local name, value = h[1], h[2]
            if type(name) == "number" then
                name = tostring(name)
            end
            if type(value) == "number" then
                value = tostring(value)
            end
            if type(name) == "string" and type(value) == "string" then
                C.os_response_header(task, name, #name, value, #value)
            end
        end
    end
end

local global_filters
local function dispatch(task_addr, method, path, started_ms)
    async.bind(task_addr)
    local req = request.live(task_addr, method, path, new_request_id(), started_ms)
    local route, status, allow, matched = router:lookup(method, path)
    local resp
    if route then
        if status ~= nil then -- else made if a script asks (lib.request)
            req.params = status
        end
        resp = run(route_filters[route], route.fn, route.path, req)
    elseif status == 405 then
        req._allow = allow
        resp = run(global_filters, method_not_allowed, matched.path, req)
    else
        resp = run(global_filters, not_found, "unmatched", req)
    end
    -- The task is freed once this returns: a request object kept beyond its response (a
    -- handler's cache, a spawned function) must not reach it, and reads nothing more.
    req._task = nil
    if type(resp.headers) == "table" then
        send_headers(task_addr, resp.headers)
    end
    -- The metrics' route label: always a declared pattern (the path matched one, whatever the
    -- method) or "unmatched", never the raw path, so clients cannot grow the label set.
    local label = route or matched
    return resp.status, resp.body or "", label and label.path or "unmatched"
end

-- Jobs: routes.lua's `jobs = { name = { handler = "module.function", every_ms = N, workers = W } }`.
-- Each worker of a replica runs one background coroutine (JOBS=0 turns them off) with the
-- jobs it runs: a job with workers = "all" on every worker, one with workers = "one" (the
-- default) on worker 0 only. Instances of a job, on workers and replicas, share its work
-- through the database (the outbox leases its rows with FOR UPDATE SKIP LOCKED). A job may
-- spread its work over tasks it starts with async.spawn (the outbox delivers a batch's rows
-- in parallel) and waits for them before its cycle ends. A job's cycle fails when it raises
-- or returns nil, err; it is logged and the job runs again at its next turn, whatever failed
-- (the coroutine itself never ends on a failure). A cycle that completes is reported to the
-- C core, where /health/ and /metrics see it (an instance that stops completing cycles makes
-- /health/ answer 503).
local jobs = {}

-- Why the job declaration is unusable, or nil; shared with `orderservice check`.
function _M.job_problem(name, job)
    if type(job) ~= "table" or type(job.handler) ~= "string" or type(job.every_ms) ~= "number" or job.every_ms < 1 then
        return ("job %q: needs handler = \"module.function\" and every_ms >= 1"):format(tostring(name))
    end
    if job.workers ~= nil and job.workers ~= "one" and job.workers ~= "all" then
        return ("job %q: workers must be \"one\" (worker 0, the default) or \"all\", not %q"):format(
            tostring(name), tostring(job.workers))
    end
end

-- Runs until the worker stops or a reload retires this VM (the new VM starts its own).
function _M.background(task_addr)
    async.bind(task_addr)
    local task = async.task()
    local worker = config_of_host.worker_id
    -- Declared even when empty: a reload may have taken this worker's jobs away.
    local names, every = ffi.new("const char *[?]", #jobs), ffi.new("int64_t[?]", #jobs)
    for i, job in ipairs(jobs) do
        names[i - 1], every[i - 1] = job.name, job.every_ms
    end
    C.os_jobs_declare(worker, names, every, #jobs)
    if #jobs == 0 then
        return
    end
    log.info("background jobs started", { worker = worker, jobs = #jobs })
    while C.os_task_retired(task) == 0 do
        local now = tonumber(C.os_monotonic_ms())
        local next_at = now + 1000
        for _, job in ipairs(jobs) do
            if now >= job.due_at then
                local ok, result, err = xpcall(job.fn, traceback)
                if not ok then
                    log.error("job failed", { job = job.name, error = result })
                elseif result == nil and err ~= nil then
                    log.warn("job cycle failed", { job = job.name, error = tostring(err) })
                else
                    C.os_job_succeeded(worker, job.name)
                end
                now = tonumber(C.os_monotonic_ms())
                job.due_at = now + job.every_ms
            end
            if job.due_at < next_at then
                next_at = job.due_at
            end
        end
        async.sleep(math.max(next_at - now, 1))
    end
    log.info("background jobs stopped", { worker = worker })
end

-- The jobs this VM's worker runs, in name order.
local function build_jobs(decl, worker)
    for name, job in pairs(decl or {}) do
        local problem = _M.job_problem(name, job)
        if problem then
            error(problem, 0)
        end
        local fn = resolve_handler(job.handler, "job " .. name)
        if job.workers == "all" or worker == 0 then
            jobs[#jobs + 1] = { name = name, fn = fn, every_ms = job.every_ms, due_at = 0 }
        end
    end
    sort(jobs, function(a, b) return a.name < b.name end)
end

function _M.init(config)
    -- First, so that routes.lua and every module it pulls in can read the settings.
    local settings = require("lib.config")
    settings._install(config.settings)
    if settings.LUAJIT_OFF then jit.off() end
    config_of_host = config
    -- Every random source from the kernel's pool (core/random.c), never from the clock.
    math.randomseed(tonumber(C.os_random_u64() % 0x20000000000000ULL))
    id_prefix = ("%012x-%x-"):format(tonumber(C.os_random_u64() % 0x1000000000000ULL), config.worker_id)
    local chunk, err = loadfile(config.routes_file)
    if not chunk then
        error("cannot load " .. config.routes_file .. ": " .. err, 0)
    end
    local decl = chunk()
    if type(decl) ~= "table" or type(decl.routes) ~= "table" then
        error(config.routes_file .. " must return { filters = {...}, routes = {...} }", 0)
    end
    router = router_mod.new(decl.routes)
    local where = locate.new(config.routes_file)
    global_filters = build_filters(decl.filters, nil, function(e)
        return where:filter(e.filter) .. ": " .. e.message
    end)
    build_jobs(decl.jobs, config.worker_id)
    for index, route in ipairs(router:routes()) do
        route.fn = resolve_handler(route.handler, "route " .. index)
        route_filters[route] = build_filters(decl.filters, route.filters, function(e)
            return where:route_message(index, route, e.message)
        end)
    end
    log.info("routes loaded", { routes = #router:routes(), file = config.routes_file })
    return dispatch
end

-- The body of every task async.spawn starts (core/luahost.c: os_task_spawn); an error
-- ends that task only.
function _M.spawned(task_addr, id)
    local ok, err = xpcall(async._run_spawned, traceback, task_addr, id)
    if not ok then
        log.error("spawned task failed", { error = err })
    end
end

_M.config = function() return config_of_host end
_M.resolve_handler = resolve_handler -- for `orderservice check` (lib/check.lua)

return _M
