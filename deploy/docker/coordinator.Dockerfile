# The coordinator image: `jetsweep` alone, built without the ML stack (no burn). From the repo root:
#   docker build -f deploy/docker/coordinator.Dockerfile -t REGISTRY/jetsweep/coordinator:0.1.0 .
# Runs as user 10001 (the Kubernetes manifests' runAsUser); the state file and the dataset files
# sweeps may name live on volumes. Off loopback it serves only with TLS and a token (see
# deploy/README.md); for a look on one host:
#   docker run --rm -p 127.0.0.1:7070:7070 IMAGE serve --listen 0.0.0.0:7070 --insecure \
#     --state /var/lib/jetsweep/state.db
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetsweep-coordinator --bin jetsweep \
    && strip -o /jetsweep target/release/jetsweep

FROM debian:bookworm-slim
RUN groupadd --gid 10001 jetsweep \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/jetsweep --shell /usr/sbin/nologin jetsweep \
    && mkdir -p /var/lib/jetsweep /data \
    && chown 10001:10001 /var/lib/jetsweep /data
COPY --from=build /jetsweep /usr/local/bin/jetsweep
COPY sweeps /usr/share/jetsweep/sweeps
USER 10001:10001
VOLUME ["/var/lib/jetsweep", "/data"]
# 7070: gRPC, the dashboard, /metrics, /healthz (TLS and token); 7071: KEDA's scaler (--scaler-listen).
EXPOSE 7070 7071
ENTRYPOINT ["jetsweep"]
CMD ["serve", "--listen", "0.0.0.0:7070", "--scaler-listen", "0.0.0.0:7071", "--state", "/var/lib/jetsweep/state.db", "--data-root", "/data"]
