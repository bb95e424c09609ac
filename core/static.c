/*
 * static.c - owns the static files: the My Orders page's script and styles (STATIC_DIR, at
 * /static/) and Swagger UI from the pinned swagger-ui-dist npm package (SWAGGER_UI_DIR, at
 * /orders-doc/ui/). h2o's file handler serves them (ETag, Last-Modified, 304, HEAD, ranges)
 * without entering Lua, so they cost no VM time and work while the scripts reload.
 *
 * Every answer carries:
 *   Cache-Control: public, max-age=300  short, because the names carry no version: a deploy is
 *                                       seen within 5 minutes, and the ETag makes a
 *                                       revalidation a 304;
 *   X-Content-Type-Options: nosniff     a script or style is only ever used as its own type;
 *   Content-Security-Policy: default-src 'none'  an HTML file found here (swagger-ui-dist ships
 *                                       index.html and oauth2-redirect.html with inline script)
 *                                       can run nothing; the pages themselves come from Lua.
 * Directory listings are off. These paths skip the Lua filters (no access-log line, no auth):
 * they hold no data.
 */
#include "static.h"
#include "framing.h"
#include "log.h"

#include <sys/stat.h>

/* h2o's headers filter takes a name that is not one of its tokens as a plain string. */
static h2o_iovec_t csp_name = {H2O_STRLIT("content-security-policy")};
static h2o_iovec_t nosniff_name = {H2O_STRLIT("x-content-type-options")};

static h2o_headers_command_t headers[] = {
    {H2O_HEADERS_CMD_SET, &H2O_TOKEN_CACHE_CONTROL->buf, {H2O_STRLIT("public, max-age=300")}},
    {H2O_HEADERS_CMD_SET, &nosniff_name, {H2O_STRLIT("nosniff")}},
    {H2O_HEADERS_CMD_SET, &csp_name, {H2O_STRLIT("default-src 'none'; frame-ancestors 'none'")}},
    {H2O_HEADERS_CMD_NULL, NULL, {NULL, 0}},
};

static const char *no_index[] = {NULL};

void os_static_register(h2o_hostconf_t *host, const char *prefix, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        os_log(OS_LOG_WARN, "%s is not a directory: %s answers 404 (see README, Configuration)", dir, prefix);
    h2o_pathconf_t *path = h2o_config_register_path(host, prefix, 0);
    os_framing_guard(path);
    h2o_headers_register(path, headers);
    h2o_file_register(path, dir, no_index, NULL, 0);
}
