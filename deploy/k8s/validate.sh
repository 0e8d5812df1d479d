#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates it offline: against the Kubernetes
# API schemas (kubernetes-validate --strict: unknown fields are errors), then for what fits together
# across objects and images (check.py; KEDA's ScaledObject is a custom resource no schema here
# covers). Run by .ci/run; installs kubernetes-validate from PyPI if missing.
#   deploy/k8s/validate.sh [KUBERNETES_VERSION]      # default: the package's newest (1.37.0)
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${1:-1.37.0}
command -v kubectl >/dev/null || { echo "kubectl is needed (it renders the overlays): https://kubernetes.io/docs/tasks/tools/" >&2; exit 1; }
if ! python3 -c "import kubernetes_validate" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate==1.37.0
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for overlay in overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$OUT/$name.yaml"
  # The ScaledObject's "no schema" warning is expected: check.py covers it.
  python3 -m kubernetes_validate --strict --quiet --no-warn -k "$VERSION" "$OUT/$name.yaml"
  python3 check.py "$name" < "$OUT/$name.yaml"
done
echo "every overlay renders and validates (Kubernetes $VERSION, strict)"
