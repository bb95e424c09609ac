-- ip_allow filter: only peers inside the listed CIDRs get through; others get 403. Meant to
-- fence /metrics (and admin-only routes) to the cluster's network. The address is the TCP
-- peer's: behind a proxy or load balancer that is the proxy, so list its range or put the
-- fence in the proxy. IPv4-mapped IPv6 peers (::ffff:10.0.0.1) match IPv4 ranges.

local response = require("lib.response")

local byte, floor, tonumber = string.byte, math.floor, tonumber

local _M = {
    PRIORITY = 50000, -- before auth: a fenced route answers 403 without looking at tokens
    DESCRIPTION = "403 unless the peer address is inside one of the CIDRs",
    schema = {
        allow = { type = "array", min = 1, required = true, of = "string",
                  description = "CIDRs (10.0.0.0/8, 127.0.0.1, ::1/128) allowed through" },
    },
}

local function parse_v4(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then
        return nil
    end
    local out = {}
    for i, part in ipairs({ a, b, c, d }) do
        local n = tonumber(part)
        if n > 255 or (#part > 1 and byte(part) == 48) then
            return nil
        end
        out[i] = n
    end
    return out
end

-- 16 bytes, or nil. Handles "::" and a trailing dotted IPv4 part.
local function parse_v6(s)
    if not s:find("^[%x:%.]+$") then
        return nil
    end
    local head, tail = s, nil
    local at = s:find("::", 1, true)
    if at then
        head, tail = s:sub(1, at - 1), s:sub(at + 2)
        if tail:find("::", 1, true) then
            return nil
        end
    end
    local function groups(part)
        local out = {}
        if part == "" then
            return out
        end
        for g in (part .. ":"):gmatch("([^:]*):") do
            if g:find("%.") then
                local v4 = parse_v4(g)
                if not v4 then
                    return nil
                end
                out[#out + 1] = v4[1] * 256 + v4[2]
                out[#out + 1] = v4[3] * 256 + v4[4]
            elseif g:find("^%x%x?%x?%x?$") then
                out[#out + 1] = tonumber(g, 16)
            else
                return nil
            end
        end
        return out
    end
    local h, t = groups(head), groups(tail or "")
    if not h or not t then
        return nil
    end
    local n = #h + #t
    if (at and n > 7) or (not at and n ~= 8) then
        return nil
    end
    local words = {}
    for _, w in ipairs(h) do
        words[#words + 1] = w
    end
    for _ = 1, 8 - n do
        words[#words + 1] = 0
    end
    for _, w in ipairs(t) do
        words[#words + 1] = w
    end
    local out = {}
    for i, w in ipairs(words) do
        out[2 * i - 1], out[2 * i] = floor(w / 256), w % 256
    end
    return out
end

-- bytes (4 or 16) of an address; an IPv4-mapped IPv6 address comes back as IPv4.
local function parse_ip(s)
    local v4 = parse_v4(s)
    if v4 then
        return v4
    end
    local v6 = parse_v6(s)
    if v6 then
        local mapped = v6[11] == 255 and v6[12] == 255
        for i = 1, 10 do
            mapped = mapped and v6[i] == 0
        end
        if mapped then
            return { v6[13], v6[14], v6[15], v6[16] }
        end
    end
    return v6
end
_M.parse_ip = parse_ip

local function parse_cidr(s)
    local addr, bits = s:match("^([^/]+)/(%d+)$")
    addr = addr or s
    local ip = parse_ip(addr)
    if not ip then
        return nil
    end
    local max = #ip * 8
    bits = bits and tonumber(bits) or max
    if bits > max then
        return nil
    end
    return { ip = ip, bits = bits }
end

local function contains(cidr, ip)
    if #ip ~= #cidr.ip then
        return false
    end
    local bits = cidr.bits
    for i = 1, #ip do
        if bits <= 0 then
            return true
        end
        local take = bits >= 8 and 8 or bits
        local shift = 2 ^ (8 - take)
        if floor(ip[i] / shift) ~= floor(cidr.ip[i] / shift) then
            return false
        end
        bits = bits - 8
    end
    return true
end

function _M.prepare(conf)
    local list = {}
    for i, s in ipairs(conf.allow) do
        local cidr = parse_cidr(s)
        if not cidr then
            return nil, ("option \"allow\" item %d: %q is not an address or CIDR"):format(i, s)
        end
        list[i] = cidr
    end
    conf.cidrs = list
    return conf
end

function _M.before(req, conf)
    local ip = req.remote_addr and parse_ip(req.remote_addr)
    if ip then
        for _, cidr in ipairs(conf.cidrs) do
            if contains(cidr, ip) then
                return nil
            end
        end
    end
    return response.error(403, "forbidden")
end

return _M
