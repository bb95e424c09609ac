/*
 * fuzz_jwt.c - libFuzzer target for core/jwt.c (with core/json_scan.c): token parsing and
 * verification against an HS256 key, with issuer and audience rules.
 *
 * The first byte picks the mode:
 *   even: the rest is a token as a client would send it (base64url parts, signature check);
 *   odd:  the rest is a payload, signed with the key (os_jwt_sign_hs256), then verified: the
 *         only way to reach the claim checks (exp, nbf, iss, aud, duplicates) past the HMAC.
 * Checks: no memory error; a verified payload fits the buffer and is NUL-terminated where
 * its length says; a token the key signed verifies unless a claim check refuses it.
 */
#include "config.h"
#include "jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* jwt.c reads the process settings only in os_jwt_setup, which this target never calls */
os_config_t os_config;

static os_jwt_key_t *key;
static const os_jwt_rules_t rules = {"issuer-x", "aud-y", 30};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (key == NULL)
        key = os_jwt_key_hs256("fuzz-secret-fuzz-secret-fuzz-sec", 32);
    if (size < 1)
        return 0;
    int mode = data[0] & 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, in, len);
    char payload[OS_JWT_MAX_TOKEN];
    size_t payload_len = 0;
    if (mode == 0) {
        int rc = os_jwt_verify_with(key, &rules, copy, len, 1700000000, payload, sizeof(payload), &payload_len);
        if (rc == OS_JWT_OK && (payload_len >= sizeof(payload) || payload[payload_len] != '\0'))
            abort();
        if (os_jwt_strerror(rc) == NULL)
            abort();
    } else {
        char token[OS_JWT_MAX_TOKEN * 2];
        size_t token_len = 0;
        if (os_jwt_sign_hs256(key, copy, len, token, sizeof(token), &token_len) == OS_JWT_OK) {
            if (token_len >= sizeof(token) || token[token_len] != '\0')
                abort();
            int rc = os_jwt_verify_with(key, &rules, token, token_len, 1700000000, payload, sizeof(payload),
                                        &payload_len);
            /* the signature is ours: only format (size, JSON) and claim checks may refuse it */
            if (rc == OS_JWT_ESIGNATURE || rc == OS_JWT_EALG)
                abort();
            if (rc == OS_JWT_OK && (payload_len != len || memcmp(payload, copy, len) != 0))
                abort();
        }
    }
    free(copy);
    return 0;
}
