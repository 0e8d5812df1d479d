# The CPU worker image: `jetsweep-worker` alone. From the repo root:
#   docker build -f deploy/docker/worker.Dockerfile -t REGISTRY/jetsweep/worker:0.1.0 .
# Runs as user 10001; datasets fetched from the coordinator are kept in the /cache volume.
#   docker run --rm -e JETSWEEP_TOKEN IMAGE --coordinator https://HOST:7070 --slots 2
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetsweep-worker --bin jetsweep-worker \
    && strip -o /jetsweep-worker target/release/jetsweep-worker

FROM debian:bookworm-slim
RUN groupadd --gid 10001 jetsweep \
    && useradd --uid 10001 --gid 10001 --home-dir /cache --shell /usr/sbin/nologin jetsweep \
    && mkdir -p /cache && chown 10001:10001 /cache
COPY --from=build /jetsweep-worker /usr/local/bin/jetsweep-worker
USER 10001:10001
ENV JETSWEEP_CACHE_DIR=/cache
VOLUME ["/cache"]
ENTRYPOINT ["jetsweep-worker"]
