package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local rules = require("orders.rules")

-- The full state machines of issue 4: every pair not listed is refused.
local ALLOWED = {
    order = {
        PENDING = { CONFIRMED = true, CANCELLED = true },
        CONFIRMED = { SHIPPED = true, CANCELLED = true },
        SHIPPED = { DELIVERED = true },
        DELIVERED = {},
        CANCELLED = {},
    },
    payment = {
        PENDING = { PAID = true, FAILED = true },
        PAID = { REFUNDED = true },
        FAILED = {},
        REFUNDED = {},
    },
    shipping = {
        Unknown = { Pending = true, Shipped = true, Delivered = true, Failed = true,
                    Cancelled = true },
        Pending = { Shipped = true, Failed = true, Cancelled = true },
        Shipped = { Delivered = true, Failed = true },
        Failed = { Pending = true, Cancelled = true },
        Delivered = {},
        Cancelled = {},
    },
}

describe("orders.rules", function()
    describe("valid()", function()
        it("knows each vocabulary, case included", function()
            for kind, values in pairs(rules.VALUES) do
                for _, v in ipairs(values) do
                    assert.is_true(rules.valid(kind, v), kind .. " " .. v)
                end
            end
            assert.is_false(rules.valid("order", "pending"))
            assert.is_false(rules.valid("shipping", "SHIPPED"))
            assert.is_false(rules.valid("payment", "SUCCESS"))
            assert.is_false(rules.valid("order", ""))
            assert.is_false(rules.valid("order", nil))
            assert.is_false(rules.valid("order", 1))
        end)

        it("raises on an unknown kind", function()
            assert.has_error(function() rules.valid("colour", "RED") end)
        end)
    end)

    describe("transition()", function()
        for kind, machine in pairs(ALLOWED) do
            for from in pairs(machine) do
                for to in pairs(machine) do
                    local expected = from == to and "same" or machine[from][to] and "allowed"
                        or "refused"
                    it(("%s: %s -> %s is %s"):format(kind, from, to, expected), function()
                        assert.equal(expected, rules.transition(kind, from, to))
                    end)
                end
            end
        end

        it("calls an unknown target unknown", function()
            assert.equal("unknown", rules.transition("order", "PENDING", "LOST"))
            assert.equal("unknown", rules.transition("order", "PENDING", nil))
        end)

        it("refuses any move from a value it does not know (legacy data)", function()
            assert.equal("refused", rules.transition("order", "CREATED", "CONFIRMED"))
            assert.equal("refused", rules.transition("order", nil, "CONFIRMED"))
        end)
    end)

    describe("shipping_for_order()", function()
        it("follows SHIPPED, DELIVERED and CANCELLED", function()
            assert.equal("Shipped", rules.shipping_for_order("SHIPPED"))
            assert.equal("Delivered", rules.shipping_for_order("DELIVERED"))
            assert.equal("Cancelled", rules.shipping_for_order("CANCELLED"))
            assert.is_nil(rules.shipping_for_order("PENDING"))
            assert.is_nil(rules.shipping_for_order("CONFIRMED"))
            assert.is_nil(rules.shipping_for_order(nil))
        end)
    end)
end)
