-- html_page filter: the same URL as a page for browsers and as JSON for everything else.
-- A GET or HEAD whose Accept header prefers text/html (a browser's navigation does; fetch()
-- and API clients do not) is answered here with a page from scripts/pages/, before auth runs:
-- the page is a static shell with no data in it, so it needs no token, and the JSON it then
-- fetches from the same URL goes through auth like any API call. Every other request goes on
-- to the route's handler unchanged. Both answers carry Vary: Accept, so no cache hands one
-- to a client that asked for the other.
--
-- A page is scripts/pages/<name>.html (read when the scripts load, so editing it is a reload
-- like any script) served with the strict Content-Security-Policy below: scripts and styles
-- from this origin only, no inline script, no framing.

local response = require("lib.response")

local find, gmatch, lower, match = string.find, string.gmatch, string.lower, string.match
local tonumber = tonumber

local CSP = table.concat({
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'",
}, "; ")

local _M = {
    PRIORITY = 15000, -- after cors (a preflight is answered first), before auth
    DESCRIPTION = "serves a page from scripts/pages/ to browsers (Accept: text/html) on an API route",
    CSP = CSP,
    schema = {
        page = { type = "string", required = true, match = "^[%w_]+$", hint = "a name in scripts/pages/",
                 description = "the page: scripts/pages/<page>.html" },
        cache_control = { type = "string", default = "no-cache", match = "^[^%z\r\n]+$",
                          hint = "a Cache-Control value",
                          description = "Cache-Control of the page (no-cache: revalidated, it is tiny)" },
    },
}

local pages = {} -- name -> html, read once per VM (a reload builds a new VM)

local function read_page(name)
    if pages[name] then
        return pages[name]
    end
    -- Found where the modules are (SCRIPTS_DIR is on package.path), as pages/<name>.html.
    local path, err = package.searchpath("pages." .. name, (package.path:gsub("%.lua", ".html")))
    if not path then
        return nil, "no scripts/pages/" .. name .. ".html"
    end
    local f
    f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local html = f:read("*a")
    f:close()
    pages[name] = html
    return html
end

function _M.prepare(conf)
    local html, err = read_page(conf.page)
    if not html then
        return nil, ("option \"page\": cannot read the page (%s)"):format(err)
    end
    conf.html = html
    return conf
end

-- The q of each media range in an Accept header: text/html only when named outright (a
-- bare */* is an API client's default), JSON through application/json, application/* or */*.
local function prefers_html(accept)
    if not accept or not find(accept, "text/html", 1, true) then
        return false
    end
    local html, json = 0, 0
    for part in gmatch(accept, "[^,]+") do
        local range = lower(match(part, "^%s*([^;%s]+)") or "")
        local q = tonumber(match(part, ";%s*[qQ]%s*=%s*([%d.]+)")) or 1
        if range == "text/html" then
            html = q > html and q or html
        elseif range == "application/json" or range == "application/*" or range == "*/*" then
            json = q > json and q or json
        end
    end
    return html > 0 and html > json
end
_M.prefers_html = prefers_html

function _M.before(req, conf)
    if (req.method == "GET" or req.method == "HEAD") and prefers_html(req:header("accept")) then
        req.ctx.html_page = true
        return response.html(200, conf.html, {
            ["cache-control"] = conf.cache_control,
            ["content-security-policy"] = CSP,
        })
    end
    return nil
end

function _M.after(_, resp)
    resp:header("vary", "Accept")
end

return _M
