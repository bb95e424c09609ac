-- jobs: the background work routes.lua schedules (see `jobs` there).
local outbox = require("orders.outbox")
local saga = require("orders.saga")

local _M = {}

_M.deliver_outbox = outbox.deliver_due
_M.recover_sagas = saga.recover

return _M
