# syntax=docker/dockerfile:1
#
# checkpointd's container image (deploy/README.md explains it, with docker-compose.yml and the
# Kubernetes manifests).
#
#   docker build -t checkpointd:0.1.0 \
#       --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# Stage "build" compiles the release binary. Its first layer builds the dependencies alone, from
# the manifest, the lockfile, the build script and the protos with placeholder sources, so an edit
# under src/ rebuilds only checkpointd itself. build.rs compiles the protos with protox: no protoc.
# Stage "runtime" is distroless/cc (glibc, libgcc, CA roots, a non-root user, no shell) plus our
# binary, nothing else.
#
# No Docker engine at hand? scripts/container-build-check performs these same steps natively and
# reads this file to do so (stage names, the build stage's ENV and RUN lines, COPY, USER, ENV,
# ENTRYPOINT, CMD and HEALTHCHECK of the runtime stage); scripts/check-container-files lints it.
# Keep the build stage's RUN lines relative to its WORKDIR.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never

COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin checkpointd \
    && rm -rf src

COPY src/ src/
COPY migrations/ migrations/
# COPY keeps the files' own times, which may be older than the placeholders': touch them so
# cargo rebuilds checkpointd.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin checkpointd

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="checkpointd" \
      org.opencontainers.image.description="A gRPC service that stores LangGraph-compatible agent checkpoints in PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /src/target/release/checkpointd /usr/local/bin/checkpointd

# distroless's "nonroot" user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENV CHECKPOINTD_LISTEN=0.0.0.0:50051 \
    CHECKPOINTD_LOG_FORMAT=json
EXPOSE 50051

# SERVING only while the database is reachable and migrated (checkpoint.v1.CheckpointService).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["checkpointd", "health"]

ENTRYPOINT ["checkpointd"]
CMD ["serve"]
