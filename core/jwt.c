/*
 * jwt.c - owns bearer-token verification: compact JWS with HS256 (JWT_SECRET), RS256 or
 * ES256 (JWT_PUBLIC_KEY_FILE), and the registered claims exp, nbf, iss (JWT_ISSUER) and aud
 * (JWT_AUDIENCE).
 *
 * The algorithm comes from the key the server holds, never from the token: a token whose
 * "alg" differs (including "none") is refused before any signature work, which is what
 * stops the HS256-with-the-public-key-as-secret forgery. The claims are checked here too,
 * right after the signature, so "verified" has one meaning in one function that the C tests
 * exercise with the RFC 7515 vectors; Lua reads only sub/role/customer_id from the payload.
 * Input is treated as hostile: a size cap before decoding, strict base64url (no padding, no
 * stray characters, zero unused bits: one token has one spelling), a strict JSON scanner
 * that refuses a claim given twice (parsers disagree on which copy wins), integer-only
 * NumericDates, and CRYPTO_memcmp for the HMAC. The process key is loaded once at start.
 */
#include "jwt.h"
#include "config.h"
#include "json_scan.h"

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum jwt_alg { ALG_HS256, ALG_RS256, ALG_ES256 };

struct os_jwt_key {
    enum jwt_alg alg;
    EVP_PKEY *pkey;        /* RS256 / ES256 */
    unsigned char *secret; /* HS256 */
    size_t secret_len;
    /* HS256: SHA-256 after the key's inner and outer pad blocks (RFC 2104), hashed once here;
     * OpenSSL's one-shot HMAC() fetches the algorithm and hashes them again for every token. */
    EVP_MD_CTX *hmac_inner, *hmac_outer;
};

static const char *const alg_names[] = {"HS256", "RS256", "ES256"};

/* ---- base64url (RFC 7515 section 2: no padding) ---- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict: only the url alphabet, no '=', and the unused low bits of the last character zero. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return -1;
    unsigned acc = 0, bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = ((acc << 6) | (unsigned)v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    *out_len = n;
    return 0;
}

static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        out[n++] = alphabet[(v >> 6) & 63];
        out[n++] = alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            out[n++] = alphabet[(v >> 6) & 63];
    }
    return n;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* Index of name in names (a NULL-terminated list), or -1. */
static int name_index(const char *const *names, const char *name, size_t len)
{
    for (int i = 0; names[i] != NULL; i++)
        if (name_is(name, len, names[i]))
            return i;
    return -1;
}

/* ---- the header ---- */

typedef struct header_ctx {
    enum jwt_alg want;
    unsigned seen;
    int alg_ok;
} header_ctx_t;

static const char *const header_names[] = {"alg", "typ", "crit", NULL};

static int on_header_member(void *p, const char *name, size_t len, const char *start, const char *end)
{
    header_ctx_t *h = p;
    int i = name_index(header_names, name, len);
    if (i < 0)
        return 0; /* kid, cty...: informational here, the key is fixed */
    if (h->seen & (1u << i))
        return OS_JWT_EFORMAT;
    h->seen |= 1u << i;
    if (i == 0)
        h->alg_ok = os_json_string_equals(start, end, alg_names[h->want]);
    else if (i == 2)
        return OS_JWT_EALG; /* RFC 7515 4.1.11: extensions we do not implement must be refused */
    return 0;
}

/* ---- the claims ---- */

typedef struct claims_ctx {
    const os_jwt_rules_t *rules;
    int64_t now;
    unsigned seen;
    int64_t exp, nbf;
    int iss_ok, aud_ok;
} claims_ctx_t;

enum { C_EXP, C_NBF, C_ISS, C_AUD, C_SUB, C_ROLE, C_CUSTOMER_ID };
static const char *const claim_names[] = {"exp", "nbf", "iss", "aud", "sub", "role", "customer_id", NULL};

/* An integer NumericDate; fractions, exponents, strings and values beyond int64 are refused. */
static int parse_int64(const char *start, const char *end, int64_t *out)
{
    os_json_cursor_t c = {start, end};
    int integer;
    if (os_json_scan_number(&c, &integer) != 0 || !integer || c.p != end)
        return -1;
    int neg = *start == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (const char *p = start + neg; p < end; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int audience_matches(const char *start, const char *end, const char *want)
{
    os_json_cursor_t c = {start, end};
    if (*start == '"')
        return os_json_string_equals(start, end, want) ? 1 : 0;
    if (*start != '[')
        return -1;
    c.p++;
    os_json_skip_ws(&c);
    if (c.p < c.end && *c.p == ']')
        return 0;
    for (;;) {
        os_json_skip_ws(&c);
        const char *s = c.p;
        if (c.p >= c.end || *c.p != '"' || os_json_scan_string(&c, NULL, 0, NULL) != 0)
            return -1;
        if (os_json_string_equals(s, c.p, want))
            return 1;
        os_json_skip_ws(&c);
        if (c.p >= c.end || *c.p == ']')
            return 0;
        c.p++; /* ',' (the array was validated already) */
    }
}

static int on_claim(void *p, const char *name, size_t len, const char *start, const char *end)
{
    claims_ctx_t *cl = p;
    int i = name_index(claim_names, name, len);
    if (i < 0)
        return 0;
    if (cl->seen & (1u << i))
        return OS_JWT_ECLAIMS;
    cl->seen |= 1u << i;
    switch (i) {
    case C_EXP: return parse_int64(start, end, &cl->exp) == 0 ? 0 : OS_JWT_ECLAIMS;
    case C_NBF: return parse_int64(start, end, &cl->nbf) == 0 ? 0 : OS_JWT_ECLAIMS;
    case C_ISS:
        if (*start != '"')
            return OS_JWT_ECLAIMS;
        cl->iss_ok = cl->rules->issuer == NULL || os_json_string_equals(start, end, cl->rules->issuer);
        return 0;
    case C_AUD:
        if (cl->rules->audience == NULL)
            return 0;
        cl->aud_ok = audience_matches(start, end, cl->rules->audience);
        return cl->aud_ok < 0 ? OS_JWT_ECLAIMS : 0;
    default: return 0;
    }
}

static int check_claims(const os_jwt_rules_t *rules, const char *payload, size_t len, int64_t now)
{
    claims_ctx_t cl = {.rules = rules, .now = now};
    int rc = os_json_each_member(payload, len, on_claim, &cl);
    if (rc != 0)
        return rc == -1 ? OS_JWT_EFORMAT : rc;
    if (!(cl.seen & (1u << C_EXP)))
        return OS_JWT_ECLAIMS;
    if (cl.exp < now - rules->leeway_s)
        return OS_JWT_EEXPIRED;
    if ((cl.seen & (1u << C_NBF)) && cl.nbf > now + rules->leeway_s)
        return OS_JWT_ENOTYET;
    if (rules->issuer != NULL && !((cl.seen & (1u << C_ISS)) && cl.iss_ok))
        return OS_JWT_EISSUER;
    if (rules->audience != NULL && !((cl.seen & (1u << C_AUD)) && cl.aud_ok == 1))
        return OS_JWT_EAUDIENCE;
    return OS_JWT_OK;
}

/* ---- signatures ---- */

/* ECDSA in JWS is R || S, 32 bytes each for P-256 (RFC 7518 3.4); EVP wants DER. */
static int es256_to_der(const unsigned char *sig, size_t len, unsigned char *der, size_t cap, size_t *der_len)
{
    if (len != 64)
        return -1;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    int rc = -1;
    if (s != NULL && r != NULL && ss != NULL && ECDSA_SIG_set0(s, r, ss) == 1) {
        r = ss = NULL; /* owned by s now */
        int n = i2d_ECDSA_SIG(s, NULL);
        unsigned char *p = der;
        if (n > 0 && (size_t)n <= cap && i2d_ECDSA_SIG(s, &p) == n) {
            *der_len = (size_t)n;
            rc = 0;
        }
    }
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return rc;
}

/* HMAC-SHA-256 of data under key (HS256): from the pad states, copied (read only, so the worker
 * threads share them). Returns 0 or -1. */
static int hmac_sha256(const os_jwt_key_t *key, const void *data, size_t len, unsigned char mac[32])
{
    unsigned char inner[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_MD_CTX_copy_ex(ctx, key->hmac_inner) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
             EVP_DigestFinal_ex(ctx, inner, NULL) == 1 && EVP_MD_CTX_copy_ex(ctx, key->hmac_outer) == 1 &&
             EVP_DigestUpdate(ctx, inner, sizeof(inner)) == 1 && EVP_DigestFinal_ex(ctx, mac, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(inner, sizeof(inner));
    return ok ? 0 : -1;
}

static int verify_signature(const os_jwt_key_t *key, const char *input, size_t input_len, const unsigned char *sig,
                            size_t sig_len)
{
    if (key->alg == ALG_HS256) {
        unsigned char mac[32];
        if (hmac_sha256(key, input, input_len, mac) != 0)
            return OS_JWT_EKEY;
        return sig_len == sizeof(mac) && CRYPTO_memcmp(mac, sig, sizeof(mac)) == 0 ? OS_JWT_OK : OS_JWT_ESIGNATURE;
    }
    unsigned char der[80];
    if (key->alg == ALG_ES256) {
        size_t der_len;
        if (es256_to_der(sig, sig_len, der, sizeof(der), &der_len) != 0)
            return OS_JWT_ESIGNATURE;
        sig = der;
        sig_len = der_len;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return OS_JWT_EKEY;
    int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)input, input_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? OS_JWT_OK : OS_JWT_ESIGNATURE;
}

/* ---- keys ---- */

os_jwt_key_t *os_jwt_key_hs256(const void *secret, size_t len)
{
    os_jwt_key_t *key = calloc(1, sizeof(*key));
    if (key == NULL || (key->secret = malloc(len ? len : 1)) == NULL) {
        free(key);
        return NULL;
    }
    memcpy(key->secret, secret, len);
    key->secret_len = len;
    key->alg = ALG_HS256;
    /* RFC 2104: a key longer than the block is hashed first; the rest of the block is zeros. */
    unsigned char block[64] = {0}, pad[64];
    int ok = 1;
    if (len <= sizeof(block))
        memcpy(block, secret, len);
    else
        ok = EVP_Digest(secret, len, block, NULL, EVP_sha256(), NULL) == 1;
    key->hmac_inner = EVP_MD_CTX_new();
    key->hmac_outer = EVP_MD_CTX_new();
    for (int i = 0; i < 2 && ok; i++) {
        for (size_t j = 0; j < sizeof(pad); j++)
            pad[j] = block[j] ^ (i == 0 ? 0x36 : 0x5c);
        EVP_MD_CTX *ctx = i == 0 ? key->hmac_inner : key->hmac_outer;
        ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, pad, sizeof(pad)) == 1;
    }
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(pad, sizeof(pad));
    if (!ok) {
        os_jwt_key_free(key);
        return NULL;
    }
    return key;
}

os_jwt_key_t *os_jwt_key_pem(const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL) {
        snprintf(err, errlen, "not a PEM public key (-----BEGIN PUBLIC KEY-----)");
        return NULL;
    }
    enum jwt_alg alg;
    char group[64] = "";
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        /* RFC 7518 3.3: RS256 keys of 2048 bits or more */
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            snprintf(err, errlen, "RSA key has %d bits; RS256 needs at least 2048", EVP_PKEY_get_bits(pkey));
            EVP_PKEY_free(pkey);
            return NULL;
        }
        alg = ALG_RS256;
    } else if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL) == 1 &&
               strcmp(group, "prime256v1") == 0) {
        alg = ALG_ES256;
    } else {
        snprintf(err, errlen, "unsupported %s key %s: use RSA (RS256) or EC P-256 (ES256)",
                 EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?", group);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    os_jwt_key_t *key = calloc(1, sizeof(*key));
    if (key == NULL) {
        snprintf(err, errlen, "out of memory");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    key->alg = alg;
    key->pkey = pkey;
    return key;
}

void os_jwt_key_free(os_jwt_key_t *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    EVP_MD_CTX_free(key->hmac_inner);
    EVP_MD_CTX_free(key->hmac_outer);
    if (key->secret != NULL) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        free(key->secret);
    }
    free(key);
}

const char *os_jwt_key_alg(const os_jwt_key_t *key)
{
    return alg_names[key->alg];
}

/* ---- verification ---- */

int os_jwt_verify_with(const os_jwt_key_t *key, const os_jwt_rules_t *rules, const char *token, size_t len,
                       int64_t now, char *payload, size_t cap, size_t *payload_len)
{
    if (key == NULL)
        return OS_JWT_ENOKEY;
    if (token == NULL || len == 0 || len > OS_JWT_MAX_TOKEN)
        return OS_JWT_EFORMAT;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return OS_JWT_EFORMAT; /* exactly three parts: JWS compact, not JWE */

    unsigned char header[OS_JWT_MAX_TOKEN], sig[600];
    size_t header_len, sig_len;
    if (b64url_decode(token, (size_t)(dot1 - token), header, sizeof(header), &header_len) != 0)
        return OS_JWT_EFORMAT;
    header_ctx_t h = {.want = key->alg};
    int rc = os_json_each_member((const char *)header, header_len, on_header_member, &h);
    if (rc != 0)
        return rc == -1 ? OS_JWT_EFORMAT : rc;
    if (!h.alg_ok)
        return OS_JWT_EALG;

    const char *sig_b64 = dot2 + 1;
    if (b64url_decode(sig_b64, len - (size_t)(sig_b64 - token), sig, sizeof(sig), &sig_len) != 0)
        return OS_JWT_ESIGNATURE;
    if ((rc = verify_signature(key, token, (size_t)(dot2 - token), sig, sig_len)) != OS_JWT_OK)
        return rc;

    size_t plen;
    if (cap == 0 || b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), (unsigned char *)payload, cap - 1, &plen) != 0)
        return cap == 0 ? OS_JWT_ESPACE : OS_JWT_EFORMAT;
    payload[plen] = '\0';
    if ((rc = check_claims(rules, payload, plen, now)) != OS_JWT_OK)
        return rc;
    if (payload_len != NULL)
        *payload_len = plen;
    return OS_JWT_OK;
}

int os_jwt_sign_hs256(const os_jwt_key_t *key, const char *payload, size_t len, char *out, size_t cap,
                      size_t *out_len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    if (key == NULL || key->alg != ALG_HS256)
        return OS_JWT_EKEY;
    size_t need = (sizeof(header) - 1 + 2) / 3 * 4 + 1 + (len + 2) / 3 * 4 + 1 + 44 + 1;
    if (need > cap)
        return OS_JWT_ESPACE;
    size_t n = b64url_encode((const unsigned char *)header, sizeof(header) - 1, out);
    out[n++] = '.';
    n += b64url_encode((const unsigned char *)payload, len, out + n);
    unsigned char mac[32];
    if (hmac_sha256(key, out, n, mac) != 0)
        return OS_JWT_EKEY;
    out[n++] = '.';
    n += b64url_encode(mac, sizeof(mac), out + n);
    out[n] = '\0';
    if (out_len != NULL)
        *out_len = n;
    return OS_JWT_OK;
}

/* ---- the process key ---- */

static os_jwt_key_t *process_key;
static os_jwt_rules_t process_rules = {.leeway_s = OS_JWT_LEEWAY_S};

int os_jwt_setup(char *err, size_t errlen)
{
    os_jwt_key_free(process_key);
    process_key = NULL;
    process_rules.issuer = os_config.jwt_issuer[0] ? os_config.jwt_issuer : NULL;
    process_rules.audience = os_config.jwt_audience[0] ? os_config.jwt_audience : NULL;
    if (os_config.jwt_secret[0] != '\0') {
        process_key = os_jwt_key_hs256(os_config.jwt_secret, strlen(os_config.jwt_secret));
        if (process_key == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (os_config.jwt_public_key_file[0] == '\0')
        return 0;
    FILE *f = fopen(os_config.jwt_public_key_file, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "JWT_PUBLIC_KEY_FILE %s cannot be read", os_config.jwt_public_key_file);
        return -1;
    }
    char pem[65536];
    size_t n = fread(pem, 1, sizeof(pem), f);
    fclose(f);
    char why[256];
    process_key = n < sizeof(pem) ? os_jwt_key_pem(pem, n, why, sizeof(why)) : NULL;
    if (process_key == NULL) {
        snprintf(err, errlen, "JWT_PUBLIC_KEY_FILE %s: %s", os_config.jwt_public_key_file,
                 n < sizeof(pem) ? why : "file too large for a public key");
        return -1;
    }
    return 0;
}

void os_jwt_set_process_key(os_jwt_key_t *key, const char *issuer, const char *audience)
{
    static char issuer_copy[256], audience_copy[256];
    os_jwt_key_free(process_key);
    process_key = key;
    snprintf(issuer_copy, sizeof(issuer_copy), "%s", issuer ? issuer : "");
    snprintf(audience_copy, sizeof(audience_copy), "%s", audience ? audience : "");
    process_rules.issuer = issuer_copy[0] ? issuer_copy : NULL;
    process_rules.audience = audience_copy[0] ? audience_copy : NULL;
}

const os_jwt_key_t *os_jwt_process_key(void)
{
    return process_key;
}

int os_jwt_verify(const char *token, size_t len, int64_t now, char *payload, size_t cap, size_t *payload_len)
{
    return os_jwt_verify_with(process_key, &process_rules, token, len, now != 0 ? now : (int64_t)time(NULL), payload,
                              cap, payload_len);
}

const char *os_jwt_strerror(int code)
{
    switch (code) {
    case OS_JWT_OK: return "ok";
    case OS_JWT_ENOKEY: return "no token key is configured";
    case OS_JWT_EFORMAT: return "malformed token";
    case OS_JWT_EALG: return "token algorithm not accepted";
    case OS_JWT_ESIGNATURE: return "bad token signature";
    case OS_JWT_EEXPIRED: return "token expired";
    case OS_JWT_ENOTYET: return "token not yet valid";
    case OS_JWT_EISSUER: return "wrong token issuer";
    case OS_JWT_EAUDIENCE: return "wrong token audience";
    case OS_JWT_ECLAIMS: return "bad token claims";
    case OS_JWT_ESPACE: return "buffer too small";
    case OS_JWT_EKEY: return "key cannot do this";
    default: return "unknown error";
    }
}
