-- docs: the API reference at /orders-doc/ (issue 11). Served without a token.
--
--   GET /orders-doc/              Swagger UI (scripts/pages/orders_doc.html; the UI's own files
--                                 are static, from the pinned swagger-ui-dist npm package,
--                                 at /orders-doc/ui/, core/static.c)
--   GET /orders-doc/openapi.json  the OpenAPI 3.1 document, built from the loaded routes.lua
--                                 (docs/openapi.lua); built once per VM, so a reload that
--                                 changes the routes changes the document

local cjson = require("cjson")
local host = require("lib.host")
local openapi = require("docs.openapi")
local response = require("lib.response")

local _M = {}

-- Swagger UI styles itself with inline style attributes and data: images, hence this policy
-- (the My Orders page, which needs neither, has a stricter one: filters/html_page.lua).
local CSP = table.concat({
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'",
}, "; ")

local page, document

-- scripts/pages/<name>.html, found where the modules are (SCRIPTS_DIR is on package.path).
local function read(name)
    local path = assert(package.searchpath("pages." .. name, (package.path:gsub("%.lua", ".html"))))
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    return text
end

function _M.index()
    page = page or read("orders_doc")
    return response.html(200, page, { ["cache-control"] = "no-cache", ["content-security-policy"] = CSP })
end

function _M.openapi()
    if not document then
        local decl = assert(loadfile(host.config().routes_file))()
        document = response.json(200, openapi.build(decl)).body
        cjson.decode(document) -- a document that does not parse back fails here, not in a browser
    end
    return response.text(200, document, { ["content-type"] = "application/json", ["cache-control"] = "no-cache" })
end

return _M
