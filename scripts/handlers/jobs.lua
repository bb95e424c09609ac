-- jobs: the background work routes.lua schedules (see `jobs` there).
local outbox = require("lib.outbox")
local saga = require("lib.saga")

local _M = {}

_M.deliver_outbox = outbox.deliver_due
_M.recover_sagas = saga.recover

return _M
