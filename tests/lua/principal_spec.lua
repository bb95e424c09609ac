package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local principal = require("lib.principal")

describe("principal", function()
    local admin = { sub = "a", role = "admin" }
    local service = { sub = "svc", role = "service" }
    local alice = { sub = "44", role = "customer", customer_id = 44 }

    it("lets staff read any customer and a customer only themselves", function()
        assert.is_true(principal.can_read_customer(admin, 1))
        assert.is_true(principal.can_read_customer(service, "7"))
        assert.is_true(principal.can_read_customer(alice, 44))
        assert.is_true(principal.can_read_customer(alice, "44"))
        assert.is_false(principal.can_read_customer(alice, 45))
        assert.is_false(principal.can_read_customer(nil, 44))
    end)

    it("narrows lists for customers only", function()
        assert.is_nil(principal.list_scope(admin))
        assert.are.equal(44, principal.list_scope(alice))
        assert.are.equal(-1, principal.list_scope(nil))
    end)

    it("names the actor", function()
        assert.are.equal("customer:44", principal.actor(alice))
        assert.are.equal("anonymous", principal.actor(nil))
    end)

    it("builds principals from claims", function()
        assert.are.same({ sub = "5", role = "customer", customer_id = 5 }, principal.from_claims({ sub = 5 }))
        assert.are.same({ sub = "x", role = "service" }, principal.from_claims({ sub = "x", role = "service" }))
        assert.is_nil((principal.from_claims({ sub = "x" })))
        assert.is_nil((principal.from_claims({ sub = "1", role = "root" })))
        assert.is_nil((principal.from_claims({ role = "admin" })))
        assert.is_nil((principal.from_claims({ sub = "1", customer_id = 1.5 })))
        assert.is_nil((principal.from_claims({ sub = "1", customer_id = "012" })))
    end)
end)
