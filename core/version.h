/* version.h - the release version, printed by --version and exported as build info. */
#define OS_VERSION "0.1.0"
