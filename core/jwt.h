/*
 * jwt.h - JSON Web Token verification (and HS256 signing) on OpenSSL's libcrypto.
 * Lua calls os_jwt_verify/os_jwt_strerror (declared in ffi.h); this header adds what only C
 * uses: keys, the rules a token is checked against, and the process-wide key setup.
 */
#ifndef OS_JWT_H
#define OS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "ffi.h"

#define OS_JWT_MAX_TOKEN 8192 /* longer tokens are refused before any decoding */
#define OS_JWT_LEEWAY_S 30    /* clock skew tolerated on exp and nbf */

typedef struct os_jwt_key os_jwt_key_t;

/** What a token is checked against besides its signature; NULL issuer/audience: not checked. */
typedef struct os_jwt_rules {
    const char *issuer;
    const char *audience;
    int64_t leeway_s;
} os_jwt_rules_t;

/** An HS256 key: a copy of secret (len bytes). NULL when out of memory. */
os_jwt_key_t *os_jwt_key_hs256(const void *secret, size_t len);
/** An RS256 (RSA >= 2048 bits) or ES256 (EC P-256) key from PEM text; NULL with a message in err. */
os_jwt_key_t *os_jwt_key_pem(const char *pem, size_t len, char *err, size_t errlen);
/** Frees a key from os_jwt_key_hs256/os_jwt_key_pem (NULL is fine). */
void os_jwt_key_free(os_jwt_key_t *key);
/** "HS256", "RS256" or "ES256": the one algorithm this key accepts. */
const char *os_jwt_key_alg(const os_jwt_key_t *key);

/** Verifies token with key and rules at Unix time now; like os_jwt_verify otherwise. */
int os_jwt_verify_with(const os_jwt_key_t *key, const os_jwt_rules_t *rules, const char *token, size_t len,
                       int64_t now, char *payload, size_t cap, size_t *payload_len);
/** Writes an HS256 token for payload (JSON object text) into out plus NUL: 0 ok, OS_JWT_ESPACE or OS_JWT_EKEY. */
int os_jwt_sign_hs256(const os_jwt_key_t *key, const char *payload, size_t len, char *out, size_t cap,
                      size_t *out_len);

/** Loads the process key from os_config (JWT_SECRET or JWT_PUBLIC_KEY_FILE), once, before workers
 *  start: 0 ok (also when none is configured), -1 with a message in err. */
int os_jwt_setup(char *err, size_t errlen);
/** Replaces the process key (taking ownership; NULL: none) and the iss/aud rules (copied;
 *  NULL or "": not checked). For the Lua specs, which run without a configured process. */
void os_jwt_set_process_key(os_jwt_key_t *key, const char *issuer, const char *audience);
/** The process key (NULL when none is configured). */
const os_jwt_key_t *os_jwt_process_key(void);

#endif
