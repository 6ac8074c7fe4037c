#!/usr/bin/env bash
# Packaging tests: builds the Debian package and checks its contents and maintainer scripts,
# installs it into a throwaway debootstrapped Debian root and runs the server there as the
# `telemetryd` user, runs `systemd-analyze verify` on the unit, checks the Homebrew formula's
# syntax, and builds the Docker image with buildah on locally made base images (no registry)
# and runs the binary inside it until its health check passes.
#
# Installs what it needs when missing (buildah, debootstrap, ruby, cargo-deb). Caches the
# debootstrapped root under target/packaging-cache/ and the base images in buildah's storage,
# so reruns are fast. Prints PASS/FAIL lines and ends with `N passed, M failed`.
#
# Environment: PROFILE (cargo profile of the .deb, default dist), DOCKER_PROFILE (of the image,
# default dist), SKIP_DOCKER=1 to leave the image out, MIRROR (Debian mirror for debootstrap).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
started=$(date +%s)
export STORAGE_DRIVER=vfs
export BUILDAH_ISOLATION=chroot

work=$(mktemp -d /tmp/telemetryd-packaging.XXXXXX)
log="$work/log"
cache="$repo/target/packaging-cache"
mkdir -p "$cache"
passed=0
failed=0
server_pids=()

cleanup() {
  for pid in "${server_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  grep -oE " $work/[^ ]+" /proc/mounts | while read -r m; do umount "$m"; done
  if [ -n "${container:-}" ]; then
    buildah rm "$container" >/dev/null 2>&1
  fi
  if [ "${KEEP_WORK:-0}" != 1 ]; then
    # Never delete through a mounted /proc.
    if grep -q " $work/" /proc/mounts; then
      echo "leaving $work in place: something is still mounted in it"
    else
      rm -rf "$work"
    fi
  fi
}
trap cleanup EXIT

pass() {
  echo "PASS: $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
# check NAME COMMAND...: runs COMMAND (output to the log), PASS when it exits 0.
check() {
  local name=$1
  shift
  echo "== $name: $*" >>"$log"
  if "$@" >>"$log" 2>&1; then
    pass "$name"
  else
    fail "$name"
    echo "   (last lines of the log)"
    tail -n 15 "$log" | sed 's/^/   | /'
  fi
}
step() { echo "-- $* ($(($(date +%s) - started)) s)"; }
finish() {
  echo "packaging tests took $(($(date +%s) - started)) s"
  echo "$passed passed, $failed failed"
  if [ "$failed" -ne 0 ]; then exit 1; fi
  exit 0
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_healthy URL: polls `telemetryd healthcheck` on the host until it passes (30 s at most).
wait_healthy() {
  local url=$1
  for _ in $(seq 1 60); do
    if "$host_bin" healthcheck --url "$url" --timeout 1 >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

# --- tools -------------------------------------------------------------------------------
step "tools"
need_apt=()
command -v buildah >/dev/null || need_apt+=(buildah)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v ruby >/dev/null || need_apt+=(ruby)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${need_apt[@]}"; } >>"$log" 2>&1 ||
    { fail "apt-get install ${need_apt[*]}"; finish; }
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb"
  cargo install cargo-deb --locked >>"$log" 2>&1 || { fail "cargo install cargo-deb"; finish; }
fi

# --- the .deb ------------------------------------------------------------------------------
step "building the .deb (profile ${PROFILE:-dist})"
deb_started=$(date +%s)
deb=$(PROFILE="${PROFILE:-dist}" scripts/build-deb.sh 2>>"$log" | tail -n1)
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
  fail "build the .deb with cargo deb"
  tail -n 30 "$log"
  finish
fi
pass "build the .deb with cargo deb: $deb ($(stat -c %s "$deb") bytes, $(($(date +%s) - deb_started)) s)"
host_bin="${CARGO_TARGET_DIR:-$repo/target}/${PROFILE:-dist}/telemetryd"
echo "   binary: $(stat -c %s "$host_bin") bytes ($host_bin)"

dpkg-deb -c "$deb" >"$work/contents"
dpkg-deb -I "$deb" >"$work/info"
mkdir -p "$work/control" && dpkg-deb -e "$deb" "$work/control"
has_file() { grep -Eq "^[-l]\S+ \S+ +[0-9]+ \S+ \S+ \./$1( |$)" "$work/contents"; }
check "deb: /usr/bin/telemetryd is an executable" \
  grep -Eq '^-rwxr-xr-x 0/0 .* \./usr/bin/telemetryd$' "$work/contents"
check "deb: config in /etc/telemetryd" has_file "etc/telemetryd/telemetry.toml"
check "deb: config is a conffile" grep -qx "/etc/telemetryd/telemetry.toml" "$work/control/conffiles"
check "deb: systemd unit" has_file "(usr/)?lib/systemd/system/telemetryd.service"
check "deb: bash completion" has_file "usr/share/bash-completion/completions/telemetryd"
check "deb: zsh completion" has_file "usr/share/zsh/vendor-completions/_telemetryd"
check "deb: fish completion" has_file "usr/share/fish/vendor_completions.d/telemetryd.fish"
check "deb: man page" has_file "usr/share/man/man1/telemetryd.1.gz"
check "deb: control names package, arch and libc dependency" \
  sh -c "grep -q '^ Package: telemetryd' '$work/info' && grep -q '^ Architecture: $(dpkg --print-architecture)' '$work/info' && grep -Eq '^ Depends:.*libc6' '$work/info'"
check "deb: packaged config keeps data in /var/lib/telemetryd" \
  sh -c "dpkg-deb --fsys-tarfile '$deb' | tar -xO ./etc/telemetryd/telemetry.toml | grep -qx 'data_dir = \"/var/lib/telemetryd\"'"
check "deb: postinst creates the telemetryd system user and /var/lib/telemetryd" \
  sh -c "grep -q 'useradd --system' '$work/control/postinst' && grep -q '/var/lib/telemetryd' '$work/control/postinst'"
check "deb: postinst enables and starts the unit (cargo-deb systemd snippets)" \
  sh -c "grep -q 'deb-systemd-helper' '$work/control/postinst' && grep -q 'deb-systemd-invoke' '$work/control/postinst' && ! grep -q '#DEBHELPER#' '$work/control/postinst'"
check "deb: prerm stops and postrm cleans up the unit" \
  sh -c "grep -q 'deb-systemd-invoke stop' '$work/control/prerm' && grep -q 'deb-systemd-helper' '$work/control/postrm'"
check "deb: maintainer scripts are valid sh" \
  sh -c "for s in '$work'/control/p*; do sh -n \"\$s\" || exit 1; done"

# --- a throwaway Debian root ---------------------------------------------------------------
step "debootstrap root"
mirror=${MIRROR:-$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs_tar="$cache/bookworm-minbase.tar"
if [ ! -s "$rootfs_tar" ]; then
  echo "debootstrap --variant=minbase bookworm from $mirror (cached in $rootfs_tar)"
  if debootstrap --variant=minbase bookworm "$work/bootstrap" "$mirror" >>"$log" 2>&1; then
    tar -C "$work/bootstrap" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$work/bootstrap"
  else
    fail "debootstrap a Debian bookworm root from $mirror"
    finish
  fi
fi
# The install root: minbase plus systemd, as on a host that runs the unit (cached as well).
sysroot_tar="$cache/bookworm-minbase-systemd.tar"
if [ ! -s "$sysroot_tar" ]; then
  echo "adding systemd to the root (cached in $sysroot_tar)"
  sysroot="$work/sysroot"
  mkdir -p "$sysroot" && tar -C "$sysroot" -xf "$rootfs_tar"
  cp /etc/resolv.conf "$sysroot/etc/resolv.conf"
  mount -t proc proc "$sysroot/proc"
  chroot "$sysroot" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends systemd && apt-get clean' >>"$log" 2>&1
  status=$?
  umount "$sysroot/proc"
  rm -rf "$sysroot"/var/lib/apt/lists/*
  if [ $status -eq 0 ]; then
    tar -C "$sysroot" -cf "$sysroot_tar.tmp" . && mv "$sysroot_tar.tmp" "$sysroot_tar"
  fi
  rm -rf "$sysroot"
  if [ $status -ne 0 ]; then
    fail "install systemd into the Debian root"
    finish
  fi
fi
root="$work/root"
mkdir -p "$root" && tar -C "$root" -xf "$sysroot_tar"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
mount -t proc proc "$root/proc" 2>/dev/null

# --- install the .deb into it --------------------------------------------------------------
step "installing the .deb into the root"
cp "$deb" "$root/tmp/telemetryd.deb"
check "deb installs with dpkg in a Debian bookworm root" chroot "$root" dpkg -i /tmp/telemetryd.deb
in_root() { chroot "$root" "$@"; }
check "installed: telemetryd --version matches the built binary" \
  sh -c "test \"\$(chroot '$root' telemetryd --version)\" = \"\$('$host_bin' --version)\""
check "installed: check-config accepts /etc/telemetryd/telemetry.toml" \
  in_root telemetryd check-config /etc/telemetryd/telemetry.toml
check "installed: telemetryd is a system user without a login shell" \
  sh -c "chroot '$root' getent passwd telemetryd | grep -Eq '^telemetryd:x:[0-9]{1,3}:[0-9]+:.*:/var/lib/telemetryd:/usr/sbin/nologin$'"
check "installed: /var/lib/telemetryd belongs to telemetryd, mode 750" \
  sh -c "test \"\$(chroot '$root' stat -c '%U:%G %a' /var/lib/telemetryd)\" = 'telemetryd:telemetryd 750'"
check "installed: dpkg registered the conffile" \
  sh -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' telemetryd | grep -q /etc/telemetryd/telemetry.toml"
check "installed: unit enabled for multi-user.target" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/telemetryd.service"

port=$(free_port)
chroot --userspec=telemetryd:telemetryd "$root" env TELEMETRYD_SERVER__LISTEN="127.0.0.1:$port" \
  telemetryd --config /etc/telemetryd/telemetry.toml >"$work/root-server.log" 2>&1 &
root_server=$!
server_pids+=("$root_server")
check "installed: server runs as telemetryd and passes its health check" wait_healthy "http://127.0.0.1:$port"
check "installed: healthcheck inside the root exits 0" \
  in_root telemetryd healthcheck --url "http://127.0.0.1:$port"
check "installed: store and bootstrap token written by telemetryd in /var/lib/telemetryd" \
  sh -c "test \"\$(chroot '$root' stat -c %U /var/lib/telemetryd/telemetry.redb)\" = telemetryd && test \"\$(chroot '$root' stat -c '%U %a' /var/lib/telemetryd/admin-token)\" = 'telemetryd 600'"
kill -TERM "$root_server" 2>/dev/null
wait "$root_server" 2>/dev/null
root_server_status=$?
check "installed: SIGTERM stops the server cleanly (exit 0)" \
  test "$root_server_status" = 0
check "installed: healthcheck exits 1 once the server is stopped" \
  sh -c "! chroot '$root' telemetryd healthcheck --url 'http://127.0.0.1:$port' --timeout 1"

# --- systemd unit --------------------------------------------------------------------------
step "systemd unit"
unit=$(cd "$root" && ls lib/systemd/system/telemetryd.service usr/lib/systemd/system/telemetryd.service 2>/dev/null | head -n1)
# --man=no: the man page is checked below; systemd-analyze would look for it on this host.
check "systemd-analyze verify accepts the installed unit" \
  sh -c "out=\$(systemd-analyze verify --man=no --root='$root' '/$unit' 2>&1); echo \"\$out\"; test -z \"\$out\""
if command -v man >/dev/null; then
  check "man page renders" sh -c "man -l '$root/usr/share/man/man1/telemetryd.1.gz' | grep -q 'telemetryd'"
fi
check "systemd unit is hardened as required" \
  sh -c "for k in 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/telemetryd' 'NoNewPrivileges=yes' 'PrivateTmp=yes' 'CapabilityBoundingSet=' 'Restart=on-failure' 'User=telemetryd'; do grep -qx \"\$k\" packaging/telemetryd.service || { echo \"missing \$k\"; exit 1; }; done"
systemd-analyze security --offline=true --root="$root" "/$unit" >"$work/security" 2>&1
exposure=$(grep -oE 'Overall exposure level for .*' "$work/security" | head -n1)
echo "   systemd-analyze security: ${exposure:-not available}"

# --- removal -------------------------------------------------------------------------------
step "removal"
check "dpkg -r removes the binary and keeps the conffile" \
  sh -c "chroot '$root' dpkg -r telemetryd && test ! -e '$root/usr/bin/telemetryd' && test -f '$root/etc/telemetryd/telemetry.toml'"
check "dpkg --purge removes the conffile and keeps the stored events" \
  sh -c "chroot '$root' dpkg --purge telemetryd && test ! -e '$root/etc/telemetryd/telemetry.toml' && test -f '$root/var/lib/telemetryd/telemetry.redb'"
mountpoint -q "$root/proc" && umount "$root/proc"

# --- Homebrew formula ----------------------------------------------------------------------
step "homebrew formula"
formula=packaging/homebrew/telemetryd.rb
check "homebrew: formula is valid Ruby" ruby -wc "$formula"
check "homebrew: builds with cargo, installs the config to etc/telemetryd, has a service block" \
  sh -c "grep -q 'depends_on \"rust\" => :build' $formula && grep -q 'std_cargo_args' $formula && grep -q '(etc/\"telemetryd\").install' $formula && grep -q '^  service do' $formula && grep -q '^  test do' $formula"

# --- Docker image ---------------------------------------------------------------------------
if [ "${SKIP_DOCKER:-0}" = 1 ]; then
  echo "SKIP: docker image (SKIP_DOCKER=1)"
  finish
fi
step "docker: base images"
toolchain=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{print $2}')
runtime_image="localhost/telemetryd-base/debian:bookworm-minbase"
builder_image="localhost/telemetryd-base/rust:${rust_version}-bookworm"
if ! buildah inspect --type image "$runtime_image" >/dev/null 2>&1; then
  # The runtime base: the debootstrapped root, without docs, man pages and apt lists.
  base="$work/runtime-base"
  mkdir -p "$base" && tar -C "$base" -xf "$rootfs_tar"
  rm -rf "$base"/usr/share/doc/* "$base"/usr/share/man/* "$base"/usr/share/locale/* \
    "$base"/var/cache/apt/* "$base"/var/lib/apt/lists/*
  c=$(buildah from scratch) &&
    buildah copy "$c" "$base" / >>"$log" 2>&1 &&
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --cmd /bin/bash "$c" >>"$log" 2>&1 &&
    buildah commit --rm "$c" "$runtime_image" >>"$log" 2>&1
  rm -rf "$base"
fi
check "docker: runtime base image (debootstrapped bookworm)" buildah inspect --type image "$runtime_image"
if ! buildah inspect --type image "$builder_image" >/dev/null 2>&1; then
  # The builder base: the same root with gcc and this machine's Rust toolchain, laid out like
  # the official rust image (cargo on PATH, CARGO_HOME=/usr/local/cargo).
  base="$work/builder-base"
  mkdir -p "$base" && tar -C "$base" -xf "$rootfs_tar"
  cp /etc/resolv.conf "$base/etc/resolv.conf"
  mount -t proc proc "$base/proc"
  # This machine's extra CAs (a TLS-inspecting egress proxy, say), so cargo reaches crates.io.
  mkdir -p "$base/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$base/usr/local/share/ca-certificates/" 2>/dev/null
  chroot "$base" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev ca-certificates && update-ca-certificates && apt-get clean' >>"$log" 2>&1
  umount "$base/proc"
  rm -rf "$base"/var/lib/apt/lists/* "$base"/usr/share/doc/* "$base"/usr/share/man/*
  mkdir -p "$base/usr/local/rust" "$base/usr/local/cargo/bin"
  cp -a "$toolchain/bin" "$toolchain/lib" "$base/usr/local/rust/"
  c=$(buildah from scratch) &&
    buildah copy "$c" "$base" / >>"$log" 2>&1 &&
    buildah config \
      --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env CARGO_HOME=/usr/local/cargo --cmd /bin/bash "$c" >>"$log" 2>&1 &&
    buildah commit --rm "$c" "$builder_image" >>"$log" 2>&1
  rm -rf "$base"
fi
check "docker: builder base image (bookworm + gcc + rust $rust_version)" \
  buildah inspect --type image "$builder_image"

step "docker: building packaging/Dockerfile (profile ${DOCKER_PROFILE:-dist})"
image="localhost/telemetryd:packaging-test"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The previous run's image would otherwise stay behind untagged (vfs keeps full copies).
buildah rmi "$image" >/dev/null 2>&1
docker_started=$(date +%s)
check "docker: packaging/Dockerfile builds (buildah bud)" \
  buildah bud --format docker --layers=false -f packaging/Dockerfile \
  --build-arg BUILDER_IMAGE="$builder_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
  --build-arg BUILD_GIT_COMMIT="$commit" --build-arg CARGO_PROFILE="${DOCKER_PROFILE:-dist}" \
  -t "$image" .
echo "   image build took $(($(date +%s) - docker_started)) s"
if ! buildah inspect --type image "$image" >/dev/null 2>&1; then
  finish
fi
buildah inspect --type image "$image" >"$work/image.json"
image_size=$(buildah images --format '{{.Size}}' "$image" | head -n1)
echo "   image size: $image_size"
check "docker: runs as the non-root user telemetryd" sh -c "test \"\$(python3 -c \"import json; print(json.load(open('$work/image.json'))['Docker']['config']['User'])\")\" = telemetryd"
check "docker: exposes 8080 and declares the /var/lib/telemetryd volume" \
  sh -c "python3 -c \"import json,sys; c=json.load(open('$work/image.json'))['Docker']['config']; sys.exit(0 if '8080/tcp' in c['ExposedPorts'] and '/var/lib/telemetryd' in c['Volumes'] else 1)\""
check "docker: HEALTHCHECK runs telemetryd healthcheck" \
  sh -c "python3 -c \"import json,sys; h=json.load(open('$work/image.json'))['Docker']['config']['Healthcheck']['Test']; print(h); sys.exit(0 if h[:3]==['CMD','telemetryd','healthcheck'] else 1)\""

container=$(buildah from "$image" 2>>"$log")
check "docker: image reports the commit it was built from" \
  sh -c "buildah run '$container' -- telemetryd --version | grep -qF '(commit $commit)'"
check "docker: shipped config in /etc/telemetryd listens on 0.0.0.0:8080, data in /var/lib/telemetryd" \
  sh -c "buildah run '$container' -- telemetryd check-config /etc/telemetryd/telemetry.toml | tee /dev/stderr | grep -q 'listen:    0.0.0.0:8080' && buildah run '$container' -- telemetryd check-config /etc/telemetryd/telemetry.toml | grep -q 'data dir:  /var/lib/telemetryd'"
port=$(free_port)
# The image's own command, on a free loopback port (chroot isolation shares the host network).
buildah run --env TELEMETRYD_SERVER__LISTEN="127.0.0.1:$port" "$container" -- \
  telemetryd --config /etc/telemetryd/telemetry.toml >"$work/image-server.log" 2>&1 &
image_server=$!
server_pids+=("$image_server")
check "docker: the server starts inside the image" wait_healthy "http://127.0.0.1:$port"
# The HEALTHCHECK command exactly as the image declares it.
mapfile -t health < <(python3 -c "import json; [print(a) for a in json.load(open('$work/image.json'))['Docker']['config']['Healthcheck']['Test'][1:]]")
check "docker: the image's HEALTHCHECK command exits 0 against it" \
  buildah run --env TELEMETRYD_SERVER__LISTEN="127.0.0.1:$port" "$container" -- "${health[@]}"
check "docker: the server runs as telemetryd and writes its data to /var/lib/telemetryd" \
  sh -c "buildah run '$container' -- sh -c 'id -un; ls -l /var/lib/telemetryd' | tee /dev/stderr | grep -q '^telemetryd$' && buildah run '$container' -- stat -c %U /var/lib/telemetryd/telemetry.redb | grep -qx telemetryd"
kill -TERM "$image_server" 2>/dev/null
for _ in $(seq 1 40); do
  "$host_bin" healthcheck --url "http://127.0.0.1:$port" --timeout 1 >/dev/null 2>&1 || break
  sleep 0.5
done
wait "$image_server" 2>/dev/null
check "docker: the image's HEALTHCHECK command exits 1 once the server is stopped" \
  sh -c "! buildah run --env TELEMETRYD_SERVER__LISTEN=127.0.0.1:$port '$container' -- ${health[*]}"

finish
