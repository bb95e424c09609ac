-- html_page: which requests get the page, and that the JSON form is left to the handler (and
-- so to auth). The integration side is tests/integration/test_api_docs.py.
package.path = "scripts/?.lua;scripts/?/init.lua;tests/lua/?.lua;" .. package.path

local filters = require("lib.filters")
local request = require("lib.request")
local response = require("lib.response")

local function header(resp, name)
    for _, h in ipairs(resp.headers) do
        if h[1] == name then return h[2] end
    end
end

describe("html_page filter", function()
    local html_page = require("filters.html_page")
    local conf = assert(filters.check_conf(html_page, { page = "my_orders" }))
    local function req(method, accept)
        return request.new({ method = method, path = "/v1/orders/my-orders/55/", headers = { accept = accept } })
    end

    it("answers a browser's navigation with the page and a strict Content-Security-Policy", function()
        local accept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
        local resp = html_page.before(req("GET", accept), conf)
        assert.are.equal(200, resp.status)
        assert.matches("^text/html", header(resp, "content-type"))
        assert.matches("<title>My Orders</title>", resp.body, 1, true)
        local csp = header(resp, "content-security-policy")
        assert.matches("default-src 'self'", csp, 1, true)
        assert.matches("script-src 'self'", csp, 1, true)
        assert.is_nil(csp:find("unsafe", 1, true))
        assert.are.equal("no-cache", header(resp, "cache-control"))
    end)

    it("lets API clients and the page's own fetches through to the handler", function()
        for _, accept in ipairs({ false, "*/*", "application/json", "application/json, text/html;q=0.9",
                                  "text/html;q=0", "text/html;q=0.5, */*", "text/plain" }) do
            assert.is_nil(html_page.before(req("GET", accept or nil), conf), tostring(accept))
        end
        assert.is_nil(html_page.before(req("POST", "text/html"), conf), "only GET and HEAD")
        assert.is_not_nil(html_page.before(req("HEAD", "text/html"), conf))
    end)

    it("marks every answer of the route Vary: Accept", function()
        local resp = response.json(401, { error = "authentication required" })
        html_page.after(req("GET", "*/*"), resp, conf)
        assert.are.equal("Accept", header(resp, "vary"))
    end)

    it("refuses a page that does not exist when the routes load", function()
        local ok, err = filters.check_conf(html_page, { page = "nope" })
        assert.is_nil(ok)
        assert.matches("no scripts/pages/nope.html", err, 1, true)
        assert.is_nil((filters.check_conf(html_page, { page = "../routes" })))
        assert.is_nil((filters.check_conf(html_page, {})), "page is required")
    end)
end)
