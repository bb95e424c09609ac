-- async.lua - the request's task and waiting on the C core's operations.
--
-- Each request runs in its own coroutine, started by the host with the address of its C
-- task. A module that starts an operation (a timer, a query) calls wait() with the start
-- call's status: OS_OK means the operation is in flight, so the coroutine yields and the
-- event loop resumes it with the final status. The worker serves other requests meanwhile.

local ffi = require("ffi")
local C = require("lib.core")

local running, yield = coroutine.running, coroutine.yield

local OK, ECANCELED = C.OS_OK, C.OS_ECANCELED

local _M = {}

-- coroutine -> its task: the address the host passed (a number), cast to os_task_t * when
-- first asked for (most requests never wait on anything, and a cdata is one more object);
-- weak keys, so a finished request leaves nothing behind.
local tasks = setmetatable({}, { __mode = "k" })

function _M.bind(task_addr)
    tasks[running()] = task_addr
end

-- The calling request's task; raises when called outside a request's own coroutine
-- (at module load time, or inside a coroutine the handler made itself).
function _M.task()
    local co = running()
    local task = tasks[co]
    if not task then
        error("asynchronous call outside a request's coroutine", 3)
    elseif type(task) == "number" then
        task = ffi.cast("os_task_t *", task)
        tasks[co] = task
    end
    return task
end

-- What a wait raises when the request's client went away (the C core cancelled the wait,
-- OS_ECANCELED: only for GET and HEAD): the handler unwinds without doing more work, and
-- host.lua answers nobody (a 499 in the metrics and the access log).
_M.CANCELLED = setmetatable({}, { __tostring = function() return "client gone" end })

-- Turns a start call's status into the operation's final status.
function _M.wait(rc)
    if rc == OK then
        rc = yield()
    end
    if rc == ECANCELED then
        error(_M.CANCELLED, 0)
    end
    return rc
end

-- Whether the calling task should take no new work: the worker is shutting down, or a reload
-- replaced the VM it runs on (a background job finishes the row it is on, then returns).
function _M.retired()
    return C.os_task_retired(_M.task()) ~= 0
end

-- Concurrent work for a job (C core: os_task_spawn). spawn(fn) runs fn in a new task on
-- this VM, started by the event loop right after the caller yields next; each spawned task
-- may wait on its own queries and calls, so n of them keep n waits in flight. A spawned
-- task is counted with the background jobs (a drain waits for it). group() ties them to
-- the spawning task: group:spawn(fn), then group:wait() returns once every one has ended;
-- the spawner must wait, since a spawned task wakes it through its task pointer.
local spawn_fns, spawn_seq = {}, 0

-- host.lua's `spawned`: the body of every spawned task.
function _M._run_spawned(task_addr, id)
    _M.bind(task_addr)
    local fn = spawn_fns[id]
    spawn_fns[id] = nil
    fn()
end

function _M.spawn(fn)
    local parent = _M.task()
    spawn_seq = spawn_seq + 1
    spawn_fns[spawn_seq] = fn
    if C.os_task_spawn(parent, spawn_seq) ~= OK then
        spawn_fns[spawn_seq] = nil
        return nil, _M.error_message(parent)
    end
    return true
end

local group_mt = {}
group_mt.__index = group_mt

function _M.group()
    return setmetatable({ parent = _M.task(), running = 0 }, group_mt)
end

-- fn's errors are logged by the caller's wrapper (pass one that cannot raise, or pcall
-- inside): the group counts the task as ended either way.
function group_mt:spawn(fn)
    self.running = self.running + 1
    local ok, err = _M.spawn(function()
        local ran, failure = pcall(fn)
        self.running = self.running - 1
        if self.running == 0 then
            C.os_task_wake(self.parent) -- ends the parent's wait() sleep early
        end
        if not ran then
            error(failure, 0)
        end
    end)
    if not ok then
        self.running = self.running - 1
    end
    return ok, err
end

function group_mt:wait()
    while self.running > 0 do
        -- the last task to end wakes this sleep; the timeout only bounds a lost wake-up
        _M.sleep(1000)
    end
end

function _M.error_message(task)
    return ffi.string(C.os_task_error(task))
end

-- Suspends the request for ms milliseconds without blocking the worker.
function _M.sleep(ms)
    if type(ms) ~= "number" or ms < 0 then
        error("bad 'ms' argument", 2)
    end
    local task = _M.task()
    local rc = _M.wait(C.os_task_sleep(task, ms))
    if rc ~= OK then
        return nil, _M.error_message(task)
    end
    return true
end

return _M
