#!/usr/bin/env python3
"""Checks what a schema cannot: that the rendered objects of one overlay fit together and fit the
images. Reads `kubectl kustomize` output on stdin; the overlay's name (cpu, gpu) is the argument.

- KEDA's ScaledObject (a custom resource: no Kubernetes schema covers it) has the fields KEDA
  requires, targets the worker Deployment, and its scalerAddress names a Service port that reaches
  the coordinator's --scaler-listen port; slotsPerWorker is the workers' --slots.
- The coordinator's gRPC probes ask that same plaintext port; workers' --coordinator URL names a
  Service port that reaches --listen.
- Every image has a fixed tag (not latest) and a pull policy; pods run as the images' user.
- GPU workers ask for a GPU and train on cuda:0; CPU workers do not.
- The images (deploy/docker/*.Dockerfile) run as that user, their volumes are mounted, the pods'
  args suit their entrypoints, and only the GPU image is built with CUDA. (No container engine runs
  on the CI machine, so the images are checked as text here, not built.)

Exit status 1 with one line per problem."""
import os
import re
import sys

import yaml

IMAGE_USER = 10001  # the USER of deploy/docker/*.Dockerfile

problems = []


def need(ok, message):
    if not ok:
        problems.append(message)


def dockerfile(name):
    """The text of deploy/docker/NAME.Dockerfile."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "docker", f"{name}.Dockerfile")) as f:
        return f.read()


def arg(container, flag):
    """The value of `--flag=VALUE` among a container's args, or None."""
    for a in container.get("args", []):
        if a.startswith(f"--{flag}="):
            return a.split("=", 1)[1]
    return None


def main():
    overlay = sys.argv[1]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    coordinator = by_kind["StatefulSet"]["jetsweep-coordinator"]
    workers = by_kind["Deployment"]["jetsweep-worker"]
    services = by_kind["Service"]
    namespace = coordinator["metadata"]["namespace"]
    (coord,) = coordinator["spec"]["template"]["spec"]["containers"]
    (work,) = workers["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in coord["ports"]}

    def port_of(flag):
        value = arg(coord, flag)
        need(value is not None, f"the coordinator has no --{flag}")
        return int(value.rsplit(":", 1)[1]) if value else None

    listen, scaler = port_of("listen"), port_of("scaler-listen")

    def reaches(service_name, port):
        """The container port a Service port leads to, or None."""
        svc = services.get(service_name)
        if svc is None:
            return None
        for p in svc["spec"]["ports"]:
            if p["port"] == port:
                target = p.get("targetPort", port)
                return ports.get(target, target)
        return None

    # The StatefulSet's governing Service is headless.
    governing = services.get(coordinator["spec"]["serviceName"])
    need(governing is not None and governing["spec"].get("clusterIP") == "None",
         f"serviceName {coordinator['spec']['serviceName']!r} is not a headless Service here")

    # Probes: gRPC on the plaintext scaler port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = coord.get(probe, {})
        need(p.get("grpc", {}).get("port") == scaler,
             f"the coordinator's {probe} is not a gRPC probe of --scaler-listen's port {scaler}")
    for c, who in ((coord, "coordinator"), (work, "worker")):
        need("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}),
             f"the {who} has no resource requests and limits")
        need(":" in c["image"] and not c["image"].endswith(":latest"),
             f"the {who}'s image {c['image']!r} has no fixed tag")
        need(c.get("imagePullPolicy") in ("IfNotPresent", "Always"),
             f"the {who} has no imagePullPolicy")
        env = {e["name"]: e for e in c.get("env", [])}
        need("secretKeyRef" in env.get("JETSWEEP_TOKEN", {}).get("valueFrom", {}),
             f"the {who} does not take JETSWEEP_TOKEN from a Secret")
    for pod, who in ((coordinator, "coordinator"), (workers, "worker")):
        ctx = pod["spec"]["template"]["spec"].get("securityContext", {})
        need(ctx.get("runAsNonRoot") and ctx.get("runAsUser") == IMAGE_USER,
             f"the {who} pods do not run as the images' user {IMAGE_USER}")
    need(arg(coord, "tls-cert") and arg(coord, "tls-key"), "the coordinator serves without TLS")

    # Workers reach --listen through a Service.
    url = arg(work, "coordinator") or ""
    m = re.fullmatch(r"https://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)", url)
    need(m is not None, f"the workers' --coordinator {url!r} is not https://SERVICE:PORT")
    if m:
        need(reaches(m.group(1), int(m.group(2))) == listen,
             f"the workers' --coordinator {url} does not reach the coordinator's port {listen}")
    need(arg(work, "ca") is not None, "the workers trust no --ca")

    # The ScaledObject.
    (so,) = by_kind["ScaledObject"].values()
    need(so["apiVersion"] == "keda.sh/v1alpha1", f"ScaledObject apiVersion {so['apiVersion']}")
    spec = so["spec"]
    need(spec["scaleTargetRef"]["name"] == workers["metadata"]["name"],
         "the ScaledObject does not scale the worker Deployment")
    need(0 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100),
         "minReplicaCount above maxReplicaCount")
    need("replicas" not in workers["spec"],
         "the worker Deployment sets replicas, which fights KEDA on every apply")
    (trigger,) = spec["triggers"]
    need(trigger["type"] in ("external", "external-push"), f"trigger type {trigger['type']}")
    meta = trigger["metadata"]
    need(all(isinstance(v, str) for v in meta.values()), "trigger metadata values must be strings")
    m = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", meta.get("scalerAddress", ""))
    need(m is not None, f"scalerAddress {meta.get('scalerAddress')!r} is not SERVICE.NAMESPACE.svc.cluster.local:PORT")
    if m:
        need(m.group(2) == namespace, f"scalerAddress names namespace {m.group(2)}, the objects are in {namespace}")
        need(reaches(m.group(1), int(m.group(3))) == scaler,
             f"scalerAddress {meta['scalerAddress']} does not reach --scaler-listen's port {scaler}")
    for key in ("slotsPerWorker", "jobsPerSlot"):
        need(meta.get(key, "1").isdigit() and int(meta.get(key, "1")) >= 1, f"{key} {meta.get(key)!r}")
    need(meta.get("device") == ("cuda" if overlay == "gpu" else "cpu"),
         f"scaler metadata device {meta.get('device')!r}: the {overlay} pool must scale on its own device's queue")
    need(meta.get("slotsPerWorker") == arg(work, "slots"),
         f"slotsPerWorker {meta.get('slotsPerWorker')} is not the workers' --slots {arg(work, 'slots')}")

    # The images the pods run, as deploy/docker builds them.
    coord_file = dockerfile("coordinator")
    work_file = dockerfile("worker-cuda" if overlay == "gpu" else "worker")
    for text, pod, container, name in ((coord_file, coordinator, coord, "coordinator"),
                                        (work_file, workers, work, "worker")):
        need(f"USER {IMAGE_USER}:{IMAGE_USER}" in text, f"the {name} image does not run as {IMAGE_USER}")
        volumes = set(re.findall(r'"(/[^"]+)"', " ".join(re.findall(r"^VOLUME (.*)$", text, re.M))))
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        need(volumes <= mounts, f"the {name} image's volumes {sorted(volumes - mounts)} are not mounted")
    need('ENTRYPOINT ["jetsweep"]' in coord_file and coord["args"][0] == "serve",
         "the coordinator's args do not start with serve for the jetsweep entrypoint")
    need('ENTRYPOINT ["jetsweep-worker"]' in work_file and "command" not in work,
         "the worker pods do not run the image's jetsweep-worker entrypoint")
    need("-p jetsweep-coordinator" in coord_file and "cuda" not in coord_file,
         "the coordinator image must build jetsweep-coordinator alone (no ML stack)")
    need(("--features cuda" in work_file) == (overlay == "gpu"),
         "the GPU overlay's image must be built with --features cuda, the CPU one without")

    # CPU or GPU.
    gpus = work["resources"].get("limits", {}).get("nvidia.com/gpu")
    device = arg(work, "device") or "cpu"
    if overlay == "gpu":
        need(gpus == "1" and device == "cuda:0", "GPU workers must limit nvidia.com/gpu to 1 and use --device=cuda:0")
        need("cuda" in work["image"], f"GPU workers run {work['image']}, not the CUDA image")
    else:
        need(gpus is None and device == "cpu", "CPU workers ask for a GPU")

    for p in problems:
        print(f"{overlay}: {p}")
    if not problems:
        print(f"{overlay}: {len(docs)} objects fit together")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
