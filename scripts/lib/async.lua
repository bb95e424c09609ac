-- async.lua - the request's task and waiting on the C core's operations.
--
-- Each request runs in its own coroutine, started by the host with a pointer to its C
-- task. A module that starts an operation (a timer, a query) calls wait() with the start
-- call's status: OS_OK means the operation is in flight, so the coroutine yields and the
-- event loop resumes it with the final status. The worker serves other requests meanwhile.

local ffi = require("ffi")
local C = require("lib.core")

local running, yield = coroutine.running, coroutine.yield

local OK = C.OS_OK

local _M = {}

-- coroutine -> os_task_t*; weak keys, so a finished request leaves nothing behind.
local tasks = setmetatable({}, { __mode = "k" })

function _M.bind(task_ptr)
    local task = ffi.cast("os_task_t *", task_ptr)
    tasks[running()] = task
    return task
end

-- The calling request's task; raises when called outside a request's own coroutine
-- (at module load time, or inside a coroutine the handler made itself).
function _M.task()
    local task = tasks[running()]
    if not task then
        error("asynchronous call outside a request's coroutine", 3)
    end
    return task
end

-- Turns a start call's status into the operation's final status.
function _M.wait(rc)
    if rc == OK then
        rc = yield()
    end
    return rc
end

-- Whether the calling task should take no new work: the worker is shutting down, or a reload
-- replaced the VM it runs on (a background job finishes the row it is on, then returns).
function _M.retired()
    return C.os_task_retired(_M.task()) ~= 0
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
