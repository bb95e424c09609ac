package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local db = require("lib.db")

describe("db.statement", function()
    it("names a statement by its name and a hash of its text", function()
        local a = db.statement("orders_list", "SELECT 1")
        local b = db.statement("orders_list", "SELECT 2")
        assert.matches("^orders_list_%x%x%x%x%x%x%x%x$", a.name)
        assert.equal("SELECT 1", a.sql)
        assert.are_not.equal(a.name, b.name)
        -- the same text under another name is another statement
        assert.are_not.equal(a.name, db.statement("orders_other", "SELECT 1").name)
    end)

    it("returns the statement it made for a text again: SQL built per request hashes once", function()
        local sql = "SELECT " .. ("x, "):rep(100) .. "y"
        assert.equal(db.statement("orders_list", sql), db.statement("orders_list", sql .. ""))
    end)

    it("keeps a bounded number of texts, and a text made again has the same name", function()
        local first = db.statement("shapes", "SELECT 0")
        for i = 1, 1000 do
            db.statement("shapes", "SELECT " .. i)
        end
        local again = db.statement("shapes", "SELECT 0")
        assert.are_not.equal(first, again) -- forgotten: made afresh
        assert.equal(first.name, again.name)
    end)

    it("refuses a bad name or text", function()
        assert.has_error(function() db.statement("bad name", "SELECT 1") end, "bad 'name' argument")
        assert.has_error(function() db.statement(nil, "SELECT 1") end, "bad 'name' argument")
        assert.has_error(function() db.statement("ok", 42) end, "bad 'sql' argument")
    end)
end)
