# syntax=docker/dockerfile:1
#
# The binlake image: a release build of the `binlake` binary on Debian 12 slim, running as
# the non-root user 10001. From the repository root:
#
#   docker build -t registry.example.com/binlake:0.1.0 .
#
# The cache mounts (BuildKit, the default builder since Docker 23; podman/buildah support
# them too) keep the crate downloads and the build between builds.

FROM rust:1.95-bookworm AS build
# librdkafka is built from source (rdkafka's cmake-build): cmake, and libcurl's headers even
# though curl support is off; OpenSSL for Kafka TLS/SASL; zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake libcurl4-openssl-dev libssl-dev pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin binlake \
    && cp target/release/binlake /usr/local/bin/binlake

FROM debian:bookworm-slim
# The binary links OpenSSL 3 (librdkafka's TLS) and zlib (in the base image); the CA
# certificates are for TLS to Kafka and to the database.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 binlake \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin binlake
COPY --from=build /usr/local/bin/binlake /usr/local/bin/binlake
# Numeric, so Kubernetes can check runAsNonRoot without resolving the name.
USER 10001:10001
ENTRYPOINT ["binlake"]
CMD ["--help"]
