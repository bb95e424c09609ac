/*
 * test_jwt.c - core/jwt.c against the RFC 7515 appendix vectors (A.1 HS256, A.2 RS256,
 * A.3 ES256; their exp is in 2011, so they are checked at a clock set just before it) and
 * against the usual attacks: alg none, alg confusion, expiry, nbf, iss/aud, malformed and
 * oversized tokens, duplicated claims.
 */
#include "check.h"
#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define RFC_NOW 1300819300 /* 80 s before the vectors' exp of 1300819380 */

static const char rfc_payload[] = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
static const char a1[] = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                         ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                         ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
static const char a2[] =
    "eyJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQ"
    "jbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqt"
    "FZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
static const char a3[] = "eyJhbGciOiJFUzI1NiJ9"
                         ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                         ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/* The A.1 key, base64url-decoded (the JWK's "k"). */
static const unsigned char a1_key[] = {
    3,   35,  53,  75,  43,  15,  165, 188, 131, 126, 6,   101, 119, 123, 166, 143, 90,  179, 40,  230, 240, 84,
    201, 40,  169, 15,  132, 178, 210, 80,  46,  191, 211, 251, 90,  146, 210, 6,   71,  239, 150, 138, 180, 195,
    119, 98,  61,  34,  61,  46,  33,  114, 5,   46,  79,  8,   192, 205, 154, 245, 103, 208, 128, 163};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    static char buf[8192];
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static os_jwt_key_t *pem_key(const char *name)
{
    char path[1024], err[256];
    size_t len;
    snprintf(path, sizeof(path), "%s/tests/c/jwt/%s", getenv("SOURCE_DIR") ? getenv("SOURCE_DIR") : ".", name);
    char *pem = read_file(path, &len);
    if (pem == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return NULL;
    }
    os_jwt_key_t *key = os_jwt_key_pem(pem, len, err, sizeof(err));
    if (key == NULL)
        fprintf(stderr, "%s: %s\n", name, err);
    return key;
}

static const os_jwt_rules_t no_rules = {NULL, NULL, OS_JWT_LEEWAY_S};
static char payload[OS_JWT_MAX_TOKEN];

static int verify(const os_jwt_key_t *key, const os_jwt_rules_t *rules, const char *token, int64_t now)
{
    return os_jwt_verify_with(key, rules, token, strlen(token), now, payload, sizeof(payload), NULL);
}

/* An HS256 token for claims (JSON) with key; static buffer. */
static const char *sign(const os_jwt_key_t *key, const char *claims)
{
    static char tok[4096];
    if (os_jwt_sign_hs256(key, claims, strlen(claims), tok, sizeof(tok), NULL) != 0)
        return "";
    return tok;
}

/* base64url without padding into out; returns its length. */
static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[n++] = alphabet[v >> 18];
        out[n++] = alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            out[n++] = alphabet[(v >> 6) & 63];
        if (i + 2 < len)
            out[n++] = alphabet[v & 63];
    }
    return n;
}

/* header.payload.signature with a header of our choosing and the signature of another token. */
static const char *forge(const char *header_json, const char *claims_b64, const char *sig)
{
    static char tok[4096];
    size_t n = b64url((const unsigned char *)header_json, strlen(header_json), tok);
    snprintf(tok + n, sizeof(tok) - n, ".%s.%s", claims_b64, sig);
    return tok;
}

static void rfc_vectors(void)
{
    os_jwt_key_t *hs = os_jwt_key_hs256(a1_key, sizeof(a1_key));
    os_jwt_key_t *rs = pem_key("rfc7515_a2_rsa.pem");
    os_jwt_key_t *es = pem_key("rfc7515_a3_ec.pem");
    CHECK(hs != NULL && rs != NULL && es != NULL);
    CHECK(strcmp(os_jwt_key_alg(rs), "RS256") == 0 && strcmp(os_jwt_key_alg(es), "ES256") == 0);

    CHECK(verify(hs, &no_rules, a1, RFC_NOW) == OS_JWT_OK);
    CHECK(strstr(payload, "\"iss\":\"joe\"") != NULL);
    CHECK(verify(rs, &no_rules, a2, RFC_NOW) == OS_JWT_OK);
    CHECK(verify(es, &no_rules, a3, RFC_NOW) == OS_JWT_OK);
    /* the same tokens today: expired */
    CHECK(verify(hs, &no_rules, a1, 1700000000) == OS_JWT_EEXPIRED);
    CHECK(verify(es, &no_rules, a3, 1700000000) == OS_JWT_EEXPIRED);
    /* leeway: 30 s past exp is still fine, 31 s is not */
    CHECK(verify(hs, &no_rules, a1, 1300819380 + 30) == OS_JWT_OK);
    CHECK(verify(hs, &no_rules, a1, 1300819380 + 31) == OS_JWT_EEXPIRED);
    /* iss "joe" from the vector, and a required audience it lacks */
    os_jwt_rules_t joe = {"joe", NULL, 30}, other = {"mallory", NULL, 30}, aud = {NULL, "orders", 30};
    CHECK(verify(hs, &joe, a1, RFC_NOW) == OS_JWT_OK);
    CHECK(verify(hs, &other, a1, RFC_NOW) == OS_JWT_EISSUER);
    CHECK(verify(hs, &aud, a1, RFC_NOW) == OS_JWT_EAUDIENCE);

    /* one key, one algorithm: each vector fails with the others' keys */
    CHECK(verify(rs, &no_rules, a1, RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(es, &no_rules, a2, RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(hs, &no_rules, a3, RFC_NOW) == OS_JWT_EALG);

    /* a flipped signature bit, a flipped payload byte */
    char bad[sizeof(a3)];
    memcpy(bad, a3, sizeof(a3));
    bad[sizeof(a3) - 2] = bad[sizeof(a3) - 2] == 'Q' ? 'A' : 'Q';
    CHECK(verify(es, &no_rules, bad, RFC_NOW) == OS_JWT_ESIGNATURE);
    memcpy(bad, a3, sizeof(a3));
    bad[30] = bad[30] == 'a' ? 'b' : 'a';
    CHECK(verify(es, &no_rules, bad, RFC_NOW) == OS_JWT_ESIGNATURE);
    char bad2[sizeof(a2)];
    memcpy(bad2, a2, sizeof(a2));
    bad2[sizeof(a2) - 3] = bad2[sizeof(a2) - 3] == 'R' ? 'S' : 'R';
    CHECK(verify(rs, &no_rules, bad2, RFC_NOW) == OS_JWT_ESIGNATURE);

    /* alg none, with and without a signature part, against every key */
    char none_sig[256];
    snprintf(none_sig, sizeof(none_sig), "%s", forge("{\"alg\":\"none\"}", rfc_payload, ""));
    CHECK(verify(hs, &no_rules, none_sig, RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(rs, &no_rules, none_sig, RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(es, &no_rules, forge("{\"alg\":\"none\"}", rfc_payload, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
                 RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(hs, &no_rules, forge("{\"alg\":\"None\"}", rfc_payload, ""), RFC_NOW) == OS_JWT_EALG);
    CHECK(verify(hs, &no_rules, forge("{\"typ\":\"JWT\"}", rfc_payload, "x"), RFC_NOW) == OS_JWT_EALG);
    /* crit extensions are refused; a repeated alg is refused (which copy would count?) */
    CHECK(verify(hs, &no_rules, forge("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", rfc_payload, "x"), RFC_NOW) ==
          OS_JWT_EALG);
    CHECK(verify(hs, &no_rules, forge("{\"alg\":\"HS256\",\"alg\":\"none\"}", rfc_payload, "x"), RFC_NOW) ==
          OS_JWT_EFORMAT);

    /* alg confusion: HS256 signed with the RSA public key (its PEM text) as the secret */
    size_t pem_len;
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/c/jwt/rfc7515_a2_rsa.pem", getenv("SOURCE_DIR") ? getenv("SOURCE_DIR") : ".");
    char *pem = read_file(path, &pem_len);
    os_jwt_key_t *confused = pem ? os_jwt_key_hs256(pem, pem_len) : NULL;
    CHECK(confused != NULL);
    const char *forged = sign(confused, "{\"sub\":\"1\",\"role\":\"admin\",\"exp\":4000000000}");
    CHECK(verify(rs, &no_rules, forged, 1700000000) == OS_JWT_EALG);
    CHECK(verify(confused, &no_rules, forged, 1700000000) == OS_JWT_OK); /* the token itself is well-formed */
    os_jwt_key_free(confused);

    /* signing with a public key is refused */
    char out[256];
    CHECK(os_jwt_sign_hs256(rs, "{}", 2, out, sizeof(out), NULL) == OS_JWT_EKEY);
    os_jwt_key_free(hs);
    os_jwt_key_free(rs);
    os_jwt_key_free(es);
}

static void claims(void)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef";
    os_jwt_key_t *k = os_jwt_key_hs256(secret, sizeof(secret) - 1);
    const int64_t now = 1700000000;
    os_jwt_rules_t rules = {"https://issuer.example", "orders", 30};

#define TOKEN(json) sign(k, json)
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://issuer.example\",\"aud\":\"orders\"}"), now) ==
          OS_JWT_OK);
    /* aud as an array, with escapes in the issuer */
    CHECK(verify(k, &rules,
                 TOKEN("{\"exp\":1700000100,\"iss\":\"https:\\/\\/issuer.example\",\"aud\":[\"billing\",\"orders\"]}"),
                 now) == OS_JWT_OK);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://issuer.example\",\"aud\":[\"billing\"]}"), now) ==
          OS_JWT_EAUDIENCE);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://issuer.example\",\"aud\":\"Orders\"}"), now) ==
          OS_JWT_EAUDIENCE);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://issuer.example\"}"), now) == OS_JWT_EAUDIENCE);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://evil.example\",\"aud\":\"orders\"}"), now) ==
          OS_JWT_EISSUER);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"aud\":\"orders\"}"), now) == OS_JWT_EISSUER);
    CHECK(verify(k, &rules, TOKEN("{\"exp\":1700000100,\"iss\":\"https://issuer.example\",\"aud\":[1]}"), now) ==
          OS_JWT_ECLAIMS);

    /* exp: required, an integer, and nothing else */
    CHECK(verify(k, &no_rules, TOKEN("{\"sub\":\"1\"}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":\"1700000100\"}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100.5}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":17e8}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":null}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":99999999999999999999}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":9223372036854775807}"), now) == OS_JWT_OK);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1699999900}"), now) == OS_JWT_EEXPIRED);
    /* a second exp would let parsers disagree about which one counts */
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1,\"exp\":1700000100}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,\"\\u0065xp\":1}"), now) == OS_JWT_ECLAIMS);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,\"role\":\"customer\",\"role\":\"admin\"}"), now) ==
          OS_JWT_ECLAIMS);
    /* nbf honoured, with the leeway */
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,\"nbf\":1700000060}"), now) == OS_JWT_ENOTYET);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,\"nbf\":1700000030}"), now) == OS_JWT_OK);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,\"nbf\":true}"), now) == OS_JWT_ECLAIMS);
    /* payloads that are not one JSON object */
    CHECK(verify(k, &no_rules, TOKEN("[1]"), now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100} x"), now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":1700000100,}"), now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, TOKEN("{\"exp\":01700000100}"), now) == OS_JWT_EFORMAT);

    /* shape: truncated, garbage, padding, foreign characters, JWE, too long */
    const char *good = TOKEN("{\"exp\":1700000100}");
    char buf[OS_JWT_MAX_TOKEN * 2];
    snprintf(buf, sizeof(buf), "%s", good);
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_OK);
    buf[strlen(buf) - 5] = '\0';
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_ESIGNATURE);
    *strrchr(buf, '.') = '\0';
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, "", now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, "garbage", now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, "a.b.c", now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, "..", now) == OS_JWT_EFORMAT);
    CHECK(verify(k, &no_rules, "\xff\xfe.\x01.\x02", now) == OS_JWT_EFORMAT);
    snprintf(buf, sizeof(buf), "%s=", good);
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_ESIGNATURE);
    snprintf(buf, sizeof(buf), "%s.x.y", good);
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_EFORMAT);
    snprintf(buf, sizeof(buf), " %s", good);
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_EFORMAT);
    /* base64url, not base64: '+' and '/' are foreign */
    snprintf(buf, sizeof(buf), "%s", good);
    buf[3] = '+';
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_EFORMAT);
    /* a 10 KB token is refused before decoding */
    memset(buf, 'A', 10240);
    buf[10240] = '\0';
    buf[100] = '.';
    buf[200] = '.';
    CHECK(verify(k, &no_rules, buf, now) == OS_JWT_EFORMAT);
    /* a payload that does not fit the caller's buffer */
    char small[8];
    CHECK(os_jwt_verify_with(k, &no_rules, good, strlen(good), now, small, sizeof(small), NULL) == OS_JWT_EFORMAT);
    /* no key at all */
    CHECK(os_jwt_verify_with(NULL, &no_rules, good, strlen(good), now, payload, sizeof(payload), NULL) ==
          OS_JWT_ENOKEY);
    os_jwt_key_free(k);
#undef TOKEN
}

static void keys(void)
{
    char err[256];
    CHECK(os_jwt_key_pem("not a key", 9, err, sizeof(err)) == NULL);
    CHECK(pem_key("p384.pem") == NULL); /* ES256 means P-256 only */
    CHECK(strcmp(os_jwt_strerror(OS_JWT_EEXPIRED), "token expired") == 0);
    CHECK(strcmp(os_jwt_strerror(12345), "unknown error") == 0);
}

/* HS256 agrees with OpenSSL's own HMAC for secrets shorter than SHA-256's 64-byte block, as long
 * as it, and longer (hashed first, RFC 2104): jwt.c keeps the pad states and does the rest itself. */
static void hmac_secret_lengths(void)
{
    static const size_t lens[] = {0, 1, 32, 63, 64, 65, 200};
    unsigned char secret[200];
    for (size_t i = 0; i < sizeof(secret); i++)
        secret[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        os_jwt_key_t *key = os_jwt_key_hs256(secret, lens[i]);
        CHECK(key != NULL);
        const char *tok = sign(key, "{\"sub\":\"1\",\"exp\":4000000000}");
        const char *sig = strrchr(tok, '.');
        CHECK(sig != NULL);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        char want[64];
        CHECK(HMAC(EVP_sha256(), secret, (int)lens[i], (const unsigned char *)tok, (size_t)(sig - tok), mac, &mac_len) !=
              NULL);
        want[b64url(mac, mac_len, want)] = '\0';
        CHECK(strcmp(sig + 1, want) == 0);
        CHECK(verify(key, &no_rules, tok, 1700000000) == OS_JWT_OK);
        os_jwt_key_free(key);
    }
}

int main(void)
{
    hmac_secret_lengths();
    rfc_vectors();
    claims();
    keys();
    return check_summary();
}
