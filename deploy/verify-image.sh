#!/usr/bin/env bash
# Builds the repository's Dockerfile with podman and checks the image for real:
# size, configuration and files, fail-fast without a stream, the HEALTHCHECK,
# /healthz, /readyz, /metrics and POST /import over a port published on
# 127.0.0.1 (file sink on a volume), the process user, that `podman stop`
# (SIGTERM to PID 1) drains an in-flight request and exits 0 promptly, and
# the image's own Kinesis sink against kinesis-local (scripts/kinesis-local.sh),
# reading the record back from the stream.
#
#   deploy/verify-image.sh            # as root, Debian bookworm, ~10 min the first time
#
# Every address used is on loopback. Containers it starts are removed on exit.
#
# There is no Docker engine and no image registry here, so the Dockerfile's
# public base images are stood in for by local ones with the same names, made
# once and reused (in $VERIFY_IMAGE_WORKDIR):
#   - the runtime base (gcr.io/distroless/cc-debian12:nonroot): the files of
#     distroless's packages (libc6, libgcc-s1, libssl3, ca-certificates, ...)
#     taken from a `debootstrap --variant=minbase bookworm`, a passwd with
#     nonroot (65532), no shell;
#   - the builder (rust:1.95-bookworm): that bookworm plus gcc, g++, make,
#     pkg-config and OpenSSL's headers (librdkafka's build needs them, and
#     the real image has them), this machine's
#     Rust toolchain, and the crates of Cargo.lock from `cargo vendor`,
#     configured as cargo's offline source, so the build runs with
#     --network none.
# The Dockerfile itself is used unchanged: with Docker and the public images
# it is an ordinary `docker build .`.
#
# Environment: VERIFY_IMAGE_WORKDIR (default /tmp/clickstream-image-verify),
# CONTEXT (build context, default the repository), IMAGE (tag to build),
# DEBIAN_MIRROR (default: this machine's apt mirror), VERIFY_KINESIS=0 to skip
# the emulator check, HOST_PORT / KINESIS_GATEWAY_PORT / EMULATOR_PORT
# (39300 / 39301 / 39467 and 39468) for the loopback ports.
set -Eeuo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${VERIFY_IMAGE_WORKDIR:-/tmp/clickstream-image-verify}"
CONTEXT="${CONTEXT:-$REPO}"
IMAGE="${IMAGE:-localhost/clickstream-gateway:verify}"
NAME="clickstream-verify-$$"
HOST_PORT="${HOST_PORT:-39300}"
KINESIS_GATEWAY_PORT="${KINESIS_GATEWAY_PORT:-39301}"
EMULATOR_PORT="${EMULATOR_PORT:-39467}"
BASE_REV=3 # bump to rebuild the stand-in base images

# The stand-ins take the names the Dockerfile uses.
arg_default() { sed -n "s/^ARG $1=//p" "$CONTEXT/Dockerfile" | head -n1; }
RUST_IMAGE="$(arg_default RUST_IMAGE)"
RUNTIME_IMAGE="$(arg_default RUNTIME_IMAGE)"

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }
# Any command that fails outside an explicit check still says what failed
# (only while errexit is on: a check that captures a failure with `set +e`
# is left alone).
on_error() { # line command; $? is still the failed command's status here
    local rc=$?
    if [[ $- == *e* ]]; then
        printf "FAIL: line %s: '%s' exited %s\n" "$1" "$2" "$rc" >&2
        exit "$rc"
    fi
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || fail "run as root (rootful podman, debootstrap)"
[ -n "$RUST_IMAGE" ] && [ -n "$RUNTIME_IMAGE" ] || fail "Dockerfile has no ARG RUST_IMAGE= / ARG RUNTIME_IMAGE="

step "tools"
missing=()
for tool in podman buildah debootstrap runc curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc curl >/dev/null
fi
podman --version

# crun fails on this cgroup setup and the default ulimits are refused; vfs
# storage is far slower than overlay. A private storage keeps the machine's
# own podman state untouched.
mkdir -p "$WORK"
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

cleanup() {
    podman rm --force --ignore -t 0 "$NAME" "$NAME-nostream" "$NAME-kinesis" >/dev/null 2>&1 || true
    if [ -n "${KINESIS_LOCAL_DIR:-}" ]; then "$REPO/scripts/kinesis-local.sh" stop || true; fi
}
trap cleanup EXIT

image_label() { podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# --- stand-in base images --------------------------------------------------

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
    echo "${uri:-http://deb.debian.org/debian}"
}

ROOTFS="$WORK/bookworm"
make_rootfs() {
    [ -f "$ROOTFS/.complete-$BASE_REV" ] && return
    step "debootstrap bookworm (minbase + gcc, g++, make, OpenSSL headers, ca-certificates)"
    # An interrupted debootstrap can leave /proc or /sys mounted inside
    # (usually nothing is: grep then finds no line, which is fine).
    { findmnt -rn -o TARGET | grep "^$ROOTFS/" || true; } | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$ROOTFS"
    timeout 900 debootstrap --variant=minbase \
        --include=ca-certificates,g++,gcc,libc6-dev,libssl-dev,make,netbase,pkg-config,tzdata \
        bookworm "$ROOTFS" "$(debian_mirror)" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    touch "$ROOTFS/.complete-$BASE_REV"
}

# distroless cc-debian12 is these packages' files plus a passwd; nothing else.
DISTROLESS_PACKAGES="base-files netbase tzdata libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 ca-certificates"
make_runtime_base() {
    [ "$(image_label "$RUNTIME_IMAGE" verify.base-rev)" = "$BASE_REV" ] && { ok "reusing $RUNTIME_IMAGE"; return; }
    make_rootfs
    step "stand-in $RUNTIME_IMAGE"
    local dir="$WORK/distroless"
    rm -rf "$dir" && mkdir -p "$dir"
    # Paths as dpkg lists them, with the merged-/usr symlinks resolved.
    local pkg list path parent
    for pkg in $DISTROLESS_PACKAGES; do
        list="$ROOTFS/var/lib/dpkg/info/$pkg.list"
        [ -f "$list" ] || list="$ROOTFS/var/lib/dpkg/info/$pkg:amd64.list"
        [ -f "$list" ] || fail "package $pkg is not in the bookworm rootfs"
        while IFS= read -r path; do
            if [ -L "$ROOTFS$path" ] || { [ -e "$ROOTFS$path" ] && [ ! -d "$ROOTFS$path" ]; }; then
                parent="$(realpath "$ROOTFS${path%/*}")"
                printf '%s\n' "${parent#"$ROOTFS"}/${path##*/}"
            fi
        done <"$list"
    done | sed 's|^/||' | sort -u >"$WORK/distroless.files"
    [ -s "$WORK/distroless.files" ] || fail "no files for the distroless stand-in"
    tar -C "$ROOTFS" -cf - -T "$WORK/distroless.files" etc/ssl/certs/ca-certificates.crt | tar -C "$dir" -xf -
    for link in bin lib lib64 sbin; do # merged /usr, when no package listed them
        [ -L "$dir/$link" ] || ln -s "usr/$link" "$dir/$link"
    done
    mkdir -p "$dir/tmp" "$dir/home/nonroot" "$dir/root"
    chmod 1777 "$dir/tmp"
    chown 65532:65532 "$dir/home/nonroot"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$dir/etc/group"
    [ ! -e "$dir/bin/sh" ] && [ ! -e "$dir/usr/bin/sh" ] || fail "the distroless stand-in has a shell"
    podman rmi -f "$RUNTIME_IMAGE" >/dev/null 2>&1 || true
    tar -C "$dir" -cf - . | podman import \
        --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL verify.base-rev=$BASE_REV" \
        - "$RUNTIME_IMAGE" >/dev/null
    ok "$RUNTIME_IMAGE: $(podman image inspect --format '{{.Size}}' "$RUNTIME_IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
}

# The builder embeds the crates of Cargo.lock: rebuilt when it changes.
make_builder_base() {
    local want
    want="$BASE_REV-$(sha256sum "$CONTEXT/Cargo.lock" | cut -c1-16)"
    [ "$(image_label "$RUST_IMAGE" verify.base-rev)" = "$want" ] && { ok "reusing $RUST_IMAGE"; return; }
    make_rootfs
    step "cargo vendor (the crates of Cargo.lock)"
    rm -rf "$WORK/vendor"
    (cd "$CONTEXT" && CARGO_TARGET_DIR="$WORK/cargo-target" cargo vendor --locked --versioned-dirs "$WORK/vendor" >/dev/null 2>"$WORK/vendor.log") ||
        { tail -n 20 "$WORK/vendor.log"; fail "cargo vendor"; }
    cat >"$WORK/cargo-config.toml" <<'CONF'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
CONF
    step "stand-in $RUST_IMAGE"
    local toolchain ctr
    toolchain="$(rustc --print sysroot)"
    podman rmi -f "$RUST_IMAGE" localhost/verify-bookworm:build >/dev/null 2>&1 || true
    tar -C "$ROOTFS" --one-file-system --exclude=./.complete-* -cf - . | podman import - localhost/verify-bookworm:build >/dev/null
    ctr="$(buildah from --pull=never localhost/verify-bookworm:build)"
    buildah copy "$ctr" "$toolchain/bin" /usr/local/rust/bin >/dev/null
    buildah copy "$ctr" "$toolchain/lib" /usr/local/rust/lib >/dev/null
    buildah copy "$ctr" "$WORK/vendor" /usr/local/cargo/vendor >/dev/null
    buildah copy "$ctr" "$WORK/cargo-config.toml" /usr/local/cargo/config.toml >/dev/null
    buildah config \
        --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "verify.base-rev=$want" "$ctr"
    buildah commit --rm "$ctr" "$RUST_IMAGE" >/dev/null
    podman run --rm --pull=never --network none "$RUST_IMAGE" cargo --version
}

make_runtime_base
make_builder_base

# --- the image ---------------------------------------------------------------

step "build $IMAGE from $CONTEXT/Dockerfile (offline)"
revision="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
start=$(date +%s)
# --format docker: the OCI format has no HEALTHCHECK and would drop it.
timeout 3600 podman build --format docker --pull=never --network none \
    --build-arg "REVISION=$revision" -t "$IMAGE" "$CONTEXT" >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log"; fail "podman build (log: $WORK/build.log)"; }
ok "built in $(( $(date +%s) - start )) s (log: $WORK/build.log)"

step "image"
size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
awk -v s="$size" 'BEGIN { printf "IMAGE SIZE: %d bytes (%.1f MB)\n", s, s / 1e6 }'
podman images --filter "reference=$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'

inspect() { podman image inspect --format "$1" "$IMAGE"; }
user="$(inspect '{{.Config.User}}')"
case "${user%%:*}" in "" | 0 | root) fail "image user is root ($user)" ;; esac
ok "user $user"
inspect '{{json .Config.ExposedPorts}}' | grep -q '"3000/tcp"' || fail "3000/tcp not exposed"
ok "exposes 3000/tcp"
[ "$(inspect '{{.Config.StopSignal}}')" = SIGTERM ] || fail "stop signal is not SIGTERM"
ok "stop signal SIGTERM"
healthcheck="$(inspect '{{json .Config.Healthcheck}}')"
echo "$healthcheck" | grep -q healthcheck || fail "no HEALTHCHECK in the image: $healthcheck"
ok "healthcheck $healthcheck"
inspect '{{json .Config.Env}}' | grep -q '"SINK=kinesis"' || fail "SINK=kinesis is not set"
ok "env $(inspect '{{json .Config.Env}}')"
for label in title description licenses version revision; do
    [ -n "$(image_label "$IMAGE" "org.opencontainers.image.$label")" ] || fail "no org.opencontainers.image.$label label"
done
ok "labels $(inspect '{{json .Labels}}')"

# The image's files: the binary, CA certificates, no .env, no shell.
podman create --name "$NAME" --pull=never "$IMAGE" >/dev/null
podman export "$NAME" | tar -t >"$WORK/image.files"
podman rm "$NAME" >/dev/null
grep -q '^usr/local/bin/clickstream-gateway$' "$WORK/image.files" || fail "binary missing"
grep -q '^etc/ssl/certs/ca-certificates.crt$' "$WORK/image.files" || fail "CA certificates missing"
! grep -Eq '(^|/)\.env$' "$WORK/image.files" || fail ".env in the image"
! grep -Eq '^(usr/)?bin/(sh|bash|dash)$' "$WORK/image.files" || fail "a shell in the image"
ok "$(wc -l <"$WORK/image.files") paths: binary and CA certificates present; no .env, no shell"

# --- fail fast without a stream -------------------------------------------------

step "the HEALTHCHECK fails when nothing answers"
if timeout 30 podman run --rm --pull=never --network none -e SINK=file "$IMAGE" healthcheck >"$WORK/hc.out" 2>&1; then
    fail "healthcheck passed with no server"
fi
ok "exit non-zero: $(tail -n1 "$WORK/hc.out")"

step "SINK=kinesis without KINESIS_STREAM_NAME"
set +e
out="$(timeout 30 podman run --name "$NAME-nostream" --pull=never --network none "$IMAGE" 2>&1)"
code=$?
set -e
podman rm -f "$NAME-nostream" >/dev/null 2>&1 || true
echo "$out" | tail -n 3
[ "$code" != 0 ] && [ "$code" != 124 ] || fail "expected a non-zero exit at start, got $code"
echo "$out" | grep -q KINESIS_STREAM_NAME || fail "the error does not name KINESIS_STREAM_NAME"
ok "exit code $code, the message names KINESIS_STREAM_NAME"

# --- a running container ----------------------------------------------------------

step "run (file sink on a mounted volume, read-only root, 127.0.0.1:$HOST_PORT)"
# SINK=file only so this check needs no Kinesis; the image's default is kinesis.
rm -rf "$WORK/data" && mkdir -p "$WORK/data" && chown 65532:65532 "$WORK/data"
# No systemd here to run the HEALTHCHECK on a timer: its interval is
# disabled and `podman healthcheck run` runs it by hand.
podman run -d --name "$NAME" --pull=never --read-only --health-interval=disable \
    -p "127.0.0.1:$HOST_PORT:3000" -v "$WORK/data:/data" \
    -e SINK=file -e FILE_SINK_PATH=/data/records.ndjson \
    -e SHUTDOWN_TIMEOUT_MS=25000 \
    "$IMAGE" >/dev/null
base="http://127.0.0.1:$HOST_PORT"

healthy=""
for _ in $(seq 1 30); do
    if podman healthcheck run "$NAME" >/dev/null 2>&1; then healthy=1; break; fi
    sleep 1
done
[ -n "$healthy" ] || { podman logs "$NAME" | tail; fail "podman healthcheck run never passed"; }
ok "podman healthcheck run: $(podman healthcheck run "$NAME" 2>&1 || true)healthy (status $(podman inspect --format '{{.State.Health.Status}}' "$NAME" 2>/dev/null || echo ?))"

check_http() { # expected-status method path [curl args...]
    local want="$1" method="$2" path="$3" got
    shift 3
    got="$(curl -sS -m 10 -o "$WORK/body" -w '%{http_code}' -X "$method" "$@" "$base$path")"
    printf '%s %s -> %s %s\n' "$method" "$path" "$got" "$(head -c 300 "$WORK/body")"
    [ "$got" = "$want" ] || fail "$method $path: expected $want, got $got"
}
check_http 200 GET /healthz
check_http 200 GET /readyz
event='{"type":"page","url":"/home","verify":"'"$NAME"'"}'
check_http 200 POST /import -H 'X-Partition-Key: verify-user' --data-binary "$event"
grep -q '"SequenceNumber"' "$WORK/body" || fail "no receipt"
check_http 200 GET /metrics
grep -F "gateway_build_info{" "$WORK/body" | grep -qF "git_sha=\"$revision\"" ||
    fail "gateway_build_info does not carry the revision $revision"
ok "gateway_build_info: $(grep -F 'gateway_build_info{' "$WORK/body")"
stored="$(tail -n1 "$WORK/data/records.ndjson" | python3 -c 'import sys,json,base64; print(base64.b64decode(json.load(sys.stdin)["Data"]).decode())')"
[ "$stored" = "$event" ] || fail "stored record differs: $stored"
ok "the record on disk has the posted bytes"
check_http 200 POST /import/batch --data-binary '[{"n":1}, {"n":2}]'
grep -q '"FailedRecordCount":0' "$WORK/body" || fail "the batch answer is not all stored"
[ "$(tail -n2 "$WORK/data/records.ndjson" | python3 -c 'import sys,json,base64; print(" ".join(base64.b64decode(json.loads(l)["Data"]).decode() for l in sys.stdin))')" = '{"n":1} {"n":2}' ] ||
    fail "the batch's records on disk differ"
ok "a batch of two is two records on disk"

step "process user"
podman top "$NAME" pid user huser args
pid1_user="$(podman top "$NAME" pid user | awk '$1 == 1 {print $2}')"
[ -n "$pid1_user" ] && [ "$pid1_user" != root ] && [ "$pid1_user" != 0 ] || fail "PID 1 runs as '$pid1_user'"
host_pid="$(podman inspect --format '{{.State.Pid}}' "$NAME")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$host_pid/status")"
[ "$uid" != 0 ] || fail "the gateway runs as uid 0 on the host"
ok "PID 1 is the gateway, user $pid1_user (uid $uid)"

step "podman stop drains an in-flight request"
# A chunked upload still sending its body when SIGTERM arrives.
(
    printf '{"part":1,'
    sleep 2
    printf '"part2":true}'
) | curl -sS -m 30 -o "$WORK/inflight.body" -w '%{http_code}' -X POST -T - \
    -H 'Content-Type: application/json' "$base/import" >"$WORK/inflight.status" 2>&1 &
curl_pid=$!
sleep 0.7
start=$(date +%s.%N)
podman stop -t 30 "$NAME" >/dev/null
took="$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $start}")"
wait "$curl_pid" || true
code="$(podman inspect --format '{{.State.ExitCode}}' "$NAME")"
echo "in-flight request: $(cat "$WORK/inflight.status") $(cat "$WORK/inflight.body" 2>/dev/null)"
echo "podman stop took ${took} s; exit code $code"
podman logs "$NAME" 2>&1 | tail -n 4
[ "$(cat "$WORK/inflight.status")" = 200 ] || fail "the in-flight request was not drained"
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
awk "BEGIN{exit !($took < 10)}" || fail "stop took ${took} s"
ok "drained, exited 0 in ${took} s"

# --- the Kinesis sink against an emulator -------------------------------------

if [ "${VERIFY_KINESIS:-1}" = 1 ]; then
    step "Kinesis sink: kinesis-local on 127.0.0.1:$EMULATOR_PORT, the container on the host's loopback"
    export KINESIS_LOCAL_DIR="$WORK/kinesis-local" KINESIS_LOCAL_PORT="$EMULATOR_PORT" \
        KINESIS_LOCAL_TLS_PORT="$((EMULATOR_PORT + 1))"
    "$REPO/scripts/kinesis-local.sh" start
    emulator="http://127.0.0.1:$EMULATOR_PORT"
    kinesis() { # operation json: the emulator checks no signature
        curl -sS -m 10 -X POST "$emulator/" -H 'Content-Type: application/x-amz-json-1.1' \
            -H "X-Amz-Target: Kinesis_20131202.$1" -H 'X-Amz-Date: 20260101T000000Z' \
            -H 'Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0' \
            -d "$2"
    }
    json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
    stream="verify-$$"
    kinesis CreateStream "{\"StreamName\":\"$stream\",\"ShardCount\":1}" >/dev/null
    for _ in $(seq 1 50); do
        status="$(kinesis DescribeStreamSummary "{\"StreamName\":\"$stream\"}" | json '["StreamDescriptionSummary"]["StreamStatus"]')" || status=""
        [ "$status" = ACTIVE ] && break
        sleep 0.2
    done
    [ "$status" = ACTIVE ] || fail "stream $stream is $status"
    # --network host: the emulator is reached on loopback only, and so is the
    # gateway (HOST=127.0.0.1). The image's own SINK=kinesis applies.
    podman run -d --name "$NAME-kinesis" --pull=never --read-only --health-interval=disable \
        --network host -e HOST=127.0.0.1 -e PORT="$KINESIS_GATEWAY_PORT" \
        -e KINESIS_STREAM_NAME="$stream" -e AWS_REGION=us-east-1 \
        -e AWS_ENDPOINT_URL_KINESIS="$emulator" -e AWS_ACCESS_KEY_ID=test -e AWS_SECRET_ACCESS_KEY=test \
        "$IMAGE" >/dev/null
    base="http://127.0.0.1:$KINESIS_GATEWAY_PORT"
    for _ in $(seq 1 30); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$base/readyz")" = 200 ] && break
        sleep 1
    done
    check_http 200 GET /readyz
    podman healthcheck run "$NAME-kinesis" >/dev/null || fail "healthcheck (Kinesis sink)"
    event='{"type":"click","target":"#buy","verify":"'"$stream"'"}'
    check_http 200 POST /import --data-binary "$event"
    shard="$(json '["ShardId"]' <"$WORK/body")"
    sequence="$(json '["SequenceNumber"]' <"$WORK/body")"
    iterator="$(kinesis GetShardIterator "{\"StreamName\":\"$stream\",\"ShardId\":\"$shard\",\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"$sequence\"}" | json '["ShardIterator"]')"
    stored="$(kinesis GetRecords "{\"ShardIterator\":\"$iterator\",\"Limit\":1}" |
        python3 -c 'import sys, json, base64; print(base64.b64decode(json.load(sys.stdin)["Records"][0]["Data"]).decode())')"
    [ "$stored" = "$event" ] || fail "the record read back from the stream differs: $stored"
    ok "the record read back from $stream ($shard, $sequence) has the posted bytes"
    start=$(date +%s.%N)
    podman stop -t 30 "$NAME-kinesis" >/dev/null
    took="$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $start}")"
    code="$(podman inspect --format '{{.State.ExitCode}}' "$NAME-kinesis")"
    [ "$code" = 0 ] || fail "exit code $code after SIGTERM (Kinesis sink)"
    ok "podman stop: exit 0 in ${took} s"
fi

step "all checks passed: $IMAGE, $size bytes"
