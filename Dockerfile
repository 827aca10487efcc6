# syntax=docker/dockerfile:1
# The cello-host image: the binary on Debian slim, run as a non-root user.
# Components are not baked in: mount a directory of them at /srv/cello
# (served as `serve` serves any directory), or upload them as a tenant.
#
#   docker build -t cello-host .
#   docker run -p 8080:8080 -p 9090:9090 -v "$PWD/components:/srv/cello:ro" cello-host
#
# docs/deploying.md has the Kubernetes manifests that run it.

# The toolchain rust-toolchain.toml pins (tests/deploy_manifests.py checks
# they agree); the file itself is left out of the context so that rustup
# does not fetch a second toolchain and the wasm target inside the builder.
ARG RUST_IMAGE=docker.io/library/rust:1.97-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The registry and target directory are cache mounts, so a rebuild after a
# code change recompiles only what changed; the binary is copied out of
# the cache mount to be seen by the next stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --profile production --locked -p cello-host \
    && cp target/production/cello-host /usr/local/bin/cello-host

# Everything but the binary: the user, the directories, the ports.
FROM ${RUNTIME_IMAGE} AS runtime-base
# No package is added: guests' outbound HTTPS carries its own root
# certificates (webpki-roots), and the binary needs only glibc.
RUN groupadd --system --gid 10001 cello \
    && useradd --system --uid 10001 --gid cello --home-dir /var/lib/cello --no-create-home cello \
    && mkdir -p /var/lib/cello /srv/cello \
    && chown cello:cello /var/lib/cello
# Inside a container the listeners face the network. A flag, or the same
# variable given to the container, wins over these; a config file's
# [serve] and [log] keys do not (a variable wins over the config). The
# admin API opens only with an operator token (CELLO_ADMIN_TOKEN).
ENV CELLO_LISTEN=0.0.0.0:8080 \
    CELLO_OPS_LISTEN=0.0.0.0:9090 \
    CELLO_ADMIN_LISTEN=0.0.0.0:8081 \
    CELLO_STATE_DIR=/var/lib/cello \
    CELLO_ALLOW_EMPTY=true \
    CELLO_LOG_FORMAT=json
# The state directory: the compile cache, the key-value store, SQL
# databases and tenants' uploads.
VOLUME ["/var/lib/cello"]
# Traffic, the admin API, and the ops port (/healthz, /readyz, /metrics),
# which is the one to probe. No HEALTHCHECK: the image has no HTTP client
# to run one, and Kubernetes ignores it for its own probes of /healthz
# (liveness) and /readyz (readiness) on 9090.
EXPOSE 8080 8081 9090
USER 10001:10001
WORKDIR /var/lib/cello
ENTRYPOINT ["cello-host"]
CMD ["serve", "/srv/cello"]

# `--target prebuilt`: the runtime with a binary built outside, taken from
# dist/cello-host in the context (for a machine where compiling wasmtime
# in a container is too slow, or to test the runtime stage alone).
FROM runtime-base AS prebuilt
COPY dist/cello-host /usr/local/bin/cello-host

# The default target: the binary from the builder.
FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/cello-host /usr/local/bin/cello-host
