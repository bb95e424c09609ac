# OrderService images. Three stages that matter:
#   build     compiles on Debian 12 with the same -dev packages `make deps` installs
#   standins  the same binary serving scripts/standins/routes.lua: the fake inventory, payment,
#             shipping and notification services for local stacks (docker-compose.yml, k8s dev)
#   runtime   (the last stage, so the default target) the production image: the stripped binary
#             and core library, routes.lua, scripts/ without the stand-ins, sql/; non-root
#
#   docker build -t orderservice:0.1.0 .
#   docker build --target standins -t orderservice-standins:0.1.0 .
#
# Base image: a dated Debian tag, not `12-slim`, so a rebuild gets the same base until someone
# bumps the date on purpose (the builder and the runtime use the same one, so the libraries the
# binary was linked against are the ones it runs with). Debian publishes a dated tag with every
# image refresh; the one below could not be pulled from this build machine, so confirm it with
# `docker buildx imagetools inspect debian:$DEBIAN_TAG` and, in CI, pin the digest it prints
# (`--build-arg DEBIAN_TAG=bookworm-YYYYMMDD-slim@sha256:...`).
# Packages are installed by name, not by version: Debian stable only ships security and bug
# fixes inside a release (no ABI change), and an exact version pin breaks the build the day the
# mirror drops that version. The dated base fixes the release; the build log lists the versions.
#
# tests/deploy/test_dockerfile.py keeps this file honest without a Docker engine: every COPY
# source exists and every library the built binary links (ldd) comes from a package the runtime
# stage installs (or one they depend on).
ARG DEBIAN_TAG=bookworm-20251117-slim

FROM debian:${DEBIAN_TAG} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       build-essential cmake pkg-config libh2o-evloop-dev libssl-dev libluajit2-5.1-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY core core
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
    && cmake --build build -j "$(nproc)" \
    && strip --strip-unneeded build/orderservice build/liboscore.so

# Swagger UI for /orders-doc/: swagger-ui-dist as pinned by web/package-lock.json. Install scripts
# stay off (its @scarf/scarf dependency would report the install over the network).
FROM debian:${DEBIAN_TAG} AS web
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# The Lua side as shipped: everything but the stand-ins, which only the standins stage serves.
FROM debian:${DEBIAN_TAG} AS scripts
WORKDIR /app
COPY routes.lua ./
COPY scripts scripts
RUN rm -rf scripts/standins scripts/handlers/standin.lua

# What both images run on: the runtime libraries only (no compiler, no -dev packages, no curl).
FROM debian:${DEBIAN_TAG} AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libh2o-evloop0.13 libluajit2-5.1-2 lua-cjson libpq5 libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orderservice \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app orderservice
COPY --from=build /src/build/orderservice /src/build/liboscore.so /usr/local/lib/orderservice/
RUN ln -s /usr/local/lib/orderservice/orderservice /usr/local/bin/orderservice
WORKDIR /app
ENV PORT=8001 HOST=0.0.0.0 \
    ROUTES_FILE=/app/routes.lua SCRIPTS_DIR=/app/scripts \
    MIGRATIONS_DIR=/app/sql/migrations SEED_DIR=/app/seed \
    LD_LIBRARY_PATH=/usr/local/lib/orderservice
# Nothing is written inside the image at run time (logs go to stderr), so the root filesystem
# can be mounted read-only; the files are root's and only readable by the service user.
USER 10001:10001
ENTRYPOINT ["orderservice"]
CMD ["serve"]

FROM base AS standins
COPY scripts scripts
ENV PORT=8101 ROUTES_FILE=/app/scripts/standins/routes.lua WORKERS=1 JOBS=0 DATABASE_URL=
EXPOSE 8101
# bash's /dev/tcp: the slim image has no curl, and the binary has no health subcommand.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /health/ HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200$'"]

FROM base AS runtime
COPY --from=scripts /app/routes.lua ./
COPY --from=scripts /app/scripts scripts
COPY sql sql
# Static files h2o serves itself (core/static.c): the My Orders page's script and styles, and
# Swagger UI (test_dockerfile.py fails while a top-level static/ exists that this file does not copy).
COPY static static
COPY --from=web /web/node_modules/swagger-ui-dist swagger-ui
ENV STATIC_DIR=/app/static SWAGGER_UI_DIR=/app/swagger-ui
EXPOSE 8001
# Liveness, not readiness: Docker (and Swarm) restart an unhealthy container, and a database
# outage is no reason to restart a service that reconnects by itself. Kubernetes ignores
# HEALTHCHECK and uses the probes in k8s/base/deployment.yaml instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /health/live/ HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200$'"]
