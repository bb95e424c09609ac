-- config.lua - every setting of the service, as core/config.c parsed and validated it at
-- start (one table there lists them; README's "Configuration" table describes them).
--
--   local config = require("lib.config")
--   local every = config.OUTBOX_EVERY_MS
--
-- Keys are the environment variables' names; amounts are exact integers named for their unit
-- (TAX_RATE_PPM, SHIPPING_FEE_CENTS); an unset URL is "". The table is read-only, and
-- reading a name that is no setting raises, so a typo fails the start or the reload instead
-- of quietly reading nil. Nothing in the scripts reads the environment itself.

local error, rawset, tostring, type = error, rawset, tostring, type

local values -- installed once per VM by lib.host before any route or handler loads

local _M = setmetatable({}, {
    __index = function(_, name)
        if values == nil then
            error("lib.config read before the host installed the settings", 2)
        end
        local v = values[name]
        if v == nil then
            error("no setting named " .. tostring(name), 2)
        end
        return v
    end,
    __newindex = function(_, name)
        error("settings are read-only (tried to set " .. tostring(name) .. ")", 2)
    end,
    __metatable = false,
})

-- Called by lib.host.init with the table core/config.c pushed; later calls are refused.
-- (A raw field, so it needs no setting's name: settings are all upper case.)
rawset(_M, "_install", function(settings)
    if values ~= nil then
        error("settings are already installed", 2)
    end
    if type(settings) ~= "table" then
        error("bad 'settings' argument", 2)
    end
    values = settings
end)

return _M
