# OrderService image: built on Debian 12 with the same packages `make deps` installs,
# run as an unprivileged user with only the runtime libraries.
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libh2o-evloop-dev libssl-dev libluajit2-5.1-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY core core
COPY tests tests
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
    && cmake --build build -j "$(nproc)"

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libh2o-evloop0.13 libluajit2-5.1-2 lua-cjson libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app orderservice
WORKDIR /app
COPY --from=build /src/build/orderservice /src/build/liboscore.so /usr/local/lib/orderservice/
COPY routes.lua ./
COPY scripts scripts
COPY sql sql
COPY seed seed
RUN ln -s /usr/local/lib/orderservice/orderservice /usr/local/bin/orderservice && ldconfig /usr/local/lib/orderservice
ENV PORT=8001 HOST=0.0.0.0 ROUTES_FILE=/app/routes.lua SCRIPTS_DIR=/app/scripts \
    MIGRATIONS_DIR=/app/sql/migrations SEED_DIR=/app/seed LD_LIBRARY_PATH=/usr/local/lib/orderservice
USER orderservice
EXPOSE 8001
ENTRYPOINT ["orderservice"]
CMD ["serve"]
