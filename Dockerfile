# syntax=docker/dockerfile:1
#
# clickstream-gateway: a small image holding the binary and CA certificates.
#
#   docker build -t clickstream-gateway .
#   docker run --rm -p 3000:3000 -e AWS_REGION=eu-west-1 \
#     -e KINESIS_STREAM_NAME=clickstream clickstream-gateway
#
# Stage 1 compiles the dependencies in a layer of their own, reused until
# Cargo.toml or Cargo.lock change, then the gateway. Stage 2 is distroless
# cc-debian12: glibc, libgcc, CA certificates and a `nonroot` user; no shell,
# no package manager. deploy/verify-image.sh builds and runs this file for real.
#
# The base images are build arguments so a release can pin digests, e.g.
#   --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:...
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /build
# Dependencies first, against placeholder sources: only Cargo.toml and
# Cargo.lock decide whether this (slow) layer is rebuilt.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
# Then the gateway itself. COPY keeps the files' own times, which are older
# than the placeholders' build: touch the crate roots so cargo rebuilds them.
# There is no .git in the context: build.rs takes the commit for the
# gateway_build_info metric from GATEWAY_GIT_SHA (declared here, after the
# dependency layer, so a new revision does not rebuild the dependencies).
COPY build.rs ./
COPY src ./src
ARG REVISION=unknown
RUN touch src/main.rs src/lib.rs \
 && GATEWAY_GIT_SHA="${REVISION}" cargo build --release --locked \
 && cp target/release/clickstream-gateway /usr/local/bin/clickstream-gateway

FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="clickstream-gateway" \
      org.opencontainers.image.description="HTTP ingestion gateway: POST /import writes each request body to an Amazon Kinesis data stream." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=builder /usr/local/bin/clickstream-gateway /usr/local/bin/clickstream-gateway
# In a container records must go to Kinesis: with SINK=kinesis a missing
# KINESIS_STREAM_NAME stops start-up (non-zero exit naming the variable)
# instead of writing to a file that dies with the container. AWS settings come
# from the environment or the IAM role; nothing secret is baked in.
ENV SINK=kinesis \
    PORT=3000
# 65532 is distroless's `nonroot`. Numeric, so Kubernetes' runAsNonRoot can
# check it without a passwd lookup.
USER 65532:65532
EXPOSE 3000
# The gateway drains in-flight requests on SIGTERM and exits 0 within
# SHUTDOWN_TIMEOUT_MS (25 s): give `docker stop` a longer -t than that.
STOPSIGNAL SIGTERM
# No curl in the image: the binary probes GET /healthz on 127.0.0.1:$PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/clickstream-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/clickstream-gateway"]
