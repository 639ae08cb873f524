# syntax=docker/dockerfile:1
# Herald's `herald` binary in a slim, non-root image. Dependencies are built in their own layer
# (cargo-chef), so a change to Herald's code rebuilds only Herald.
FROM rust:1-bookworm AS chef
RUN apt-get update && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# Production images carry no sandbox platforms; the compose file's dev profile passes
# HERALD_FEATURES=sandbox.
ARG HERALD_FEATURES=""
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json --bin herald \
    --no-default-features --features "$HERALD_FEATURES"
COPY . .
RUN cargo build --release --bin herald --no-default-features --features "$HERALD_FEATURES"

FROM debian:bookworm-slim
# curl serves the health check only.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/herald --create-home herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
USER herald
WORKDIR /var/lib/herald
ENV HERALD_BIND=0.0.0.0:8080 \
    HERALD_DATA_DIR=/var/lib/herald
EXPOSE 8080
# Ready: the database answers (the API and workers alike serve /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz > /dev/null || exit 1
# SIGTERM drains in-flight work for HERALD_SHUTDOWN_GRACE_SECS; give the container longer.
STOPSIGNAL SIGTERM
ENTRYPOINT ["herald"]
CMD ["serve"]
