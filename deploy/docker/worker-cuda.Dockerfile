# The GPU worker image: `jetsweep-worker` built with --features cuda. From the repo root:
#   docker build -f deploy/docker/worker-cuda.Dockerfile -t REGISTRY/jetsweep/worker-cuda:0.1.0 .
# No CUDA toolkit is needed to build (cudarc loads CUDA at run time, with CUDA 13's bindings); the
# runtime image brings NVRTC, which compiles the kernels on the GPU's node, and the NVIDIA container
# toolkit mounts the driver's libcuda. Runs as user 10001; datasets are kept in the /cache volume.
#   docker run --rm --gpus 1 -e JETSWEEP_TOKEN IMAGE --coordinator https://HOST:7070 --device cuda:0
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CUDARC_CUDA_VERSION=13000 cargo build --release --locked -p jetsweep-worker --features cuda --bin jetsweep-worker \
    && strip -o /jetsweep-worker target/release/jetsweep-worker

FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04
RUN groupadd --gid 10001 jetsweep \
    && useradd --uid 10001 --gid 10001 --home-dir /cache --shell /usr/sbin/nologin jetsweep \
    && mkdir -p /cache && chown 10001:10001 /cache
COPY --from=build /jetsweep-worker /usr/local/bin/jetsweep-worker
USER 10001:10001
ENV JETSWEEP_CACHE_DIR=/cache
VOLUME ["/cache"]
ENTRYPOINT ["jetsweep-worker"]
