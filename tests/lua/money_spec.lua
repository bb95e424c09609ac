package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local ffi = require("ffi")
local money = require("orders.money")

local TAX_PPM, SHIPPING = 50000, 5000 -- 5 %, 50.00

-- cents as a plain string, so assertions never compare cdata
local function cents_of(value)
    local cents, err = money.parse(value)
    if not cents then
        return nil, err
    end
    return tostring(cents):gsub("LL$", "")
end

local function totals(prices, quantities)
    local units = {}
    for i, p in ipairs(prices) do
        units[i] = assert(money.parse(p))
    end
    local t = assert(money.totals(units, quantities, TAX_PPM, SHIPPING))
    return { subtotal = money.format(t.subtotal), tax = money.format(t.tax),
             shipping = money.format(t.shipping), total = money.format(t.total) }
end

describe("orders.money", function()
    describe("parse()", function()
        it("reads decimal strings exactly", function()
            assert.equal("1250", cents_of("12.50"))
            assert.equal("1250", cents_of("12.5"))
            assert.equal("300", cents_of("3"))
            assert.equal("0", cents_of("0"))
            assert.equal("1", cents_of("0.01"))
            assert.equal("9999999999", cents_of("99999999.99"))
            assert.equal("-150", cents_of("-1.50"))
        end)

        it("returns int64 cents", function()
            assert.is_true(ffi.istype("int64_t", (money.parse("1.00"))))
        end)

        it("reads JSON numbers with up to two decimals", function()
            assert.equal("10", cents_of(0.1))
            assert.equal("20", cents_of(0.2))
            assert.equal("1999", cents_of(19.99))
            assert.equal("500", cents_of(5))
            assert.equal("0", cents_of(-0.0))
            assert.equal("9999999999", cents_of(99999999.99))
            assert.equal("123456789012", cents_of(1234567890.12))
        end)

        it("refuses more than two decimals", function()
            assert.same({ nil, "must have at most 2 decimals" }, { money.parse("1.234") })
            assert.same({ nil, "must have at most 2 decimals" }, { money.parse("1.500") })
            assert.same({ nil, "must have at most 2 decimals" }, { money.parse(12.345) })
            assert.same({ nil, "must have at most 2 decimals" }, { money.parse(0.001) })
            assert.same({ nil, "must have at most 2 decimals" }, { money.parse(1 / 3) })
        end)

        it("refuses text that is not a plain decimal", function()
            for _, s in ipairs({ "", " 1", "1 ", "+1", "1e3", "1.", ".5", "abc", "1,50", "--1",
                                 "0x10", "1.5.0", "NaN" }) do
                local cents, err = money.parse(s)
                assert.is_nil(cents, s)
                assert.equal("must be a decimal number such as 12.50", err, s)
            end
        end)

        it("refuses values of other types and non-finite numbers", function()
            assert.same({ nil, "must be a number or a decimal string" }, { money.parse(true) })
            assert.same({ nil, "must be a number or a decimal string" }, { money.parse({}) })
            assert.same({ nil, "must be a number or a decimal string" }, { money.parse(nil) })
            assert.same({ nil, "must be a finite number" }, { money.parse(math.huge) })
            assert.same({ nil, "must be a finite number" }, { money.parse(0 / 0) })
        end)

        it("refuses amounts too large to hold", function()
            assert.same({ nil, "is too large" }, { money.parse(1e13) })
            assert.same({ nil, "is too large" }, { money.parse("100000000000000000") })
        end)
    end)

    describe("format()", function()
        it("always writes two decimals", function()
            assert.equal("0.00", money.format(0))
            assert.equal("0.05", money.format(5))
            assert.equal("12.50", money.format(1250))
            assert.equal("-12.50", money.format(-1250))
            assert.equal("99999999.99", money.format((money.parse("99999999.99"))))
        end)

        it("formats int64 values beyond a double's exact range", function()
            assert.equal("92233720368547758.07", money.format(9223372036854775807LL))
        end)
    end)

    describe("fits_numeric_10_2()", function()
        it("accepts up to 99999999.99", function()
            assert.is_true(money.fits_numeric_10_2((money.parse("99999999.99"))))
            assert.is_false(money.fits_numeric_10_2((money.parse("100000000.00"))))
        end)
    end)

    describe("totals()", function()
        it("adds 5 % tax and 50.00 shipping", function()
            assert.same({ subtotal = "100.00", tax = "5.00", shipping = "50.00", total = "155.00" },
                        totals({ "25.00" }, { 4 }))
        end)

        it("rounds the tax half to even, where floating point goes wrong", function()
            -- 10.50 * 0.05 = 0.525 exactly -> 0.52 (even); a double says 0.525000...01 -> 0.53
            assert.equal("0.52", totals({ "10.50" }, { 1 }).tax)
            -- 11.50 * 0.05 = 0.575 -> 0.58 (even); a double says 0.57499999... -> 0.57
            assert.equal("0.58", totals({ "11.50" }, { 1 }).tax)
            assert.equal("0.02", totals({ "0.30" }, { 1 }).tax) -- 0.015 -> 0.02
            assert.equal("0.00", totals({ "0.10" }, { 1 }).tax) -- 0.005 -> 0.00
            assert.equal("0.01", totals({ "0.20" }, { 1 }).tax) -- exact 0.01
            assert.equal("0.05", totals({ "1.00" }, { 1 }).tax)
        end)

        it("sums exactly what doubles cannot (0.1 + 0.2)", function()
            local t = totals({ 0.1, 0.2 }, { 1, 1 })
            assert.equal("0.30", t.subtotal)
            assert.equal("0.02", t.tax)
            assert.equal("50.32", t.total)
            -- 0.1 taken ten times is 1.00, not 0.9999999999999999
            assert.equal("1.00", totals({ "0.10" }, { 10 }).subtotal)
        end)

        it("multiplies quantities", function()
            local t = totals({ "19.99", "0.01" }, { 3, 7 })
            assert.equal("60.04", t.subtotal)
            assert.equal("3.00", t.tax) -- 3.002 -> 3.00
            assert.equal("113.04", t.total)
        end)

        it("reports overflow instead of wrapping", function()
            local big = assert(money.parse("9999999999999.99")) -- ~10^15 cents
            local t, err = money.totals({ big }, { 1000000 }, TAX_PPM, SHIPPING)
            assert.is_nil(t)
            assert.equal("overflow", err)
        end)

        it("refuses negative input", function()
            local t, err = money.totals({ (money.parse("-1.00")) }, { 1 }, TAX_PPM, SHIPPING)
            assert.is_nil(t)
            assert.equal("negative", err)
        end)

        it("raises on mismatched lists (a caller bug)", function()
            assert.has_error(function() money.totals({ 1 }, {}, TAX_PPM, SHIPPING) end)
        end)
    end)
end)
