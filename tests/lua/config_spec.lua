package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

-- A fresh copy of lib.config per test: the module holds one VM's settings.
local function fresh()
    package.loaded["lib.config"] = nil
    return require("lib.config")
end

describe("lib.config", function()
    it("refuses reads before the host installed the settings", function()
        local config = fresh()
        local ok, err = pcall(function() return config.PORT end)
        assert.is_false(ok)
        assert.matches("before the host installed", err)
    end)

    it("answers the installed values", function()
        local config = fresh()
        config._install({ PORT = 8001, JOBS = false, INVENTORY_SERVICE_URL = "" })
        assert.equals(8001, config.PORT)
        assert.equals(false, config.JOBS)
        assert.equals("", config.INVENTORY_SERVICE_URL)
    end)

    it("raises on a name that is no setting", function()
        local config = fresh()
        config._install({ PORT = 8001 })
        local ok, err = pcall(function() return config.PROT end)
        assert.is_false(ok)
        assert.matches("no setting named PROT", err)
    end)

    it("is read-only", function()
        local config = fresh()
        config._install({ PORT = 8001 })
        assert.has_error(function() config.PORT = 1 end)
        assert.has_error(function() config.NEW = 1 end)
        assert.has_error(function() setmetatable(config, nil) end)
        assert.has_error(function() config._install({ PORT = 1 }) end)
        assert.equals(8001, config.PORT)
    end)
end)
