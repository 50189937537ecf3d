#!/bin/sh
# x0tta6bl4 installer: curl -fsSL URL/install.sh | sh -s -- [options]
#
# Checks the machine first and says what will and will not work, then downloads the binary and
# SHA256SUMS, verifies the signature of SHA256SUMS (Ed25519, with the public key below) and the
# binary's checksum, installs libbpf when it is missing, then the binary, a config file, an API
# token (mode 0600) and a systemd unit that runs as its own user with only the capabilities it
# needs. Running it twice changes nothing the second time; a failure leaves nothing half-done.
#
# The release build (scripts/build) stamps the public key and the default download address into
# the copy of this script it publishes; this template has neither and refuses to download.
set -eu

PUBLIC_KEY='@PUBLIC_KEY@'
DEFAULT_BASE_URL='@BASE_URL@'

usage() {
  cat <<'USAGE'
Usage: install.sh [options]
  --version V        install version V (default: latest)
  --prefix DIR       install the binary into DIR/bin (default /usr/local); with another prefix
                     the config, data and unit also go under DIR
  --base-url URL     where releases are (or X0TTA6BL4_BASE_URL)
  --no-service       do not install or start the systemd unit
  --dry-run          say what would be done, change nothing
  --uninstall        remove the binary and the unit (keep config and data)
  --purge            with --uninstall: remove config and data too
  --non-interactive  never ask (the installer never needs to)
  -h, --help         this text
USAGE
}

say() { printf 'x0tta6bl4: %s\n' "$*" >&2; }
die() {
  printf 'x0tta6bl4: error: %s\n' "$*" >&2
  exit 1
}

VERSION=latest
PREFIX=/usr/local
BASE_URL=${X0TTA6BL4_BASE_URL:-$DEFAULT_BASE_URL}
SERVICE=1
DRY=0
UNINSTALL=0
PURGE=0
while [ $# -gt 0 ]; do
  case $1 in
    --version) VERSION=${2:?--version needs a value}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
    --base-url) BASE_URL=${2:?--base-url needs a URL}; shift ;;
    --no-service) SERVICE=0 ;;
    --dry-run) DRY=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --non-interactive) ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if [ "$PREFIX" = /usr/local ]; then
  ETC=/etc/x0tta6bl4 STATE=/var/lib/x0tta6bl4 UNITDIR=/etc/systemd/system
else
  ETC=$PREFIX/etc/x0tta6bl4 STATE=$PREFIX/var/lib/x0tta6bl4 UNITDIR=$PREFIX/lib/systemd/system
fi
BIN=$PREFIX/bin/x0tta6bl4
UNIT=$UNITDIR/x0tta6bl4.service

run() {
  if [ "$DRY" = 1 ]; then say "would run: $*"; else "$@"; fi
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# ---- uninstall -----------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if [ "$SERVICE" = 1 ] && have_systemd && [ -f "$UNIT" ]; then
    run systemctl disable --now x0tta6bl4.service || true
  fi
  for f in "$BIN" "$BIN.prev" "$UNIT"; do
    if [ -e "$f" ]; then run rm -f "$f"; say "removed $f"; fi
  done
  if [ "$PURGE" = 1 ]; then
    for d in "$ETC" "$STATE"; do
      if [ -e "$d" ]; then run rm -rf "$d"; say "removed $d"; fi
    done
  else
    say "kept $ETC and $STATE (use --purge to remove them)"
  fi
  exit 0
fi

# ---- what this machine can do, before changing anything ------------------------------------
case $(uname -m) in
  x86_64 | amd64) ARCH=x86_64 ;;
  aarch64 | arm64) ARCH=aarch64 ;;
  *) die "unsupported architecture: $(uname -m) (x0tta6bl4 is built for x86_64 and aarch64)" ;;
esac
[ "$(uname -s)" = Linux ] || die "x0tta6bl4 runs on Linux only, not $(uname -s)"
KERNEL=$(uname -r)
KMAJ=${KERNEL%%.*}
KMIN=${KERNEL#*.}
KMIN=${KMIN%%.*}
WILL="per-interface counters from the kernel (fallback mode)"
if [ "$KMAJ" -gt 5 ] || { [ "$KMAJ" -eq 5 ] && [ "$KMIN" -ge 15 ]; }; then
  if [ -r /sys/kernel/btf/vmlinux ]; then
    WILL="eBPF flow accounting (XDP/TC), the API, metrics and the mesh"
  else
    say "no kernel BTF (/sys/kernel/btf/vmlinux): eBPF needs CONFIG_DEBUG_INFO_BTF=y"
  fi
else
  say "Linux $KERNEL is older than 5.15: eBPF accounting will not run"
fi
say "machine: Linux $KERNEL on $ARCH; will work: $WILL"

case $BASE_URL in
  "" | @*@) die "no download address: pass --base-url URL or set X0TTA6BL4_BASE_URL" ;;
esac
case $PUBLIC_KEY in
  *BEGIN*) ;;
  *) die "this install.sh carries no release key: use the one published with a release" ;;
esac
command -v openssl >/dev/null 2>&1 ||
  die "openssl is needed to verify the release signature: install it (apt-get install openssl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed (coreutils)"
if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die "curl or wget is needed to download"
fi

TMP=$(mktemp -d)
BACKUPS=""
INSTALLED=""
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    # Nothing half-installed: put back what was replaced, remove what was added.
    for f in $INSTALLED; do rm -f "$f"; done
    for f in $BACKUPS; do mv -f "$f.x0bak" "$f"; done
  else
    for f in $BACKUPS; do rm -f "$f.x0bak"; done
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT INT TERM

# ---- download and verify -------------------------------------------------------------------
ASSET=x0tta6bl4-linux-$ARCH
URL=${BASE_URL%/}/$VERSION
say "downloading $URL/$ASSET"
fetch "$URL/SHA256SUMS" "$TMP/SHA256SUMS" || die "cannot download $URL/SHA256SUMS"
fetch "$URL/SHA256SUMS.sig" "$TMP/SHA256SUMS.sig" || die "cannot download $URL/SHA256SUMS.sig"
printf '%s\n' "$PUBLIC_KEY" >"$TMP/release.pub"
openssl pkeyutl -verify -pubin -inkey "$TMP/release.pub" -rawin -in "$TMP/SHA256SUMS" \
  -sigfile "$TMP/SHA256SUMS.sig" >/dev/null 2>&1 ||
  die "the signature of SHA256SUMS does not verify: refusing to install"
fetch "$URL/$ASSET" "$TMP/$ASSET" || die "cannot download $URL/$ASSET"
grep "  $ASSET\$" "$TMP/SHA256SUMS" >"$TMP/sum" || die "SHA256SUMS does not list $ASSET"
(cd "$TMP" && sha256sum -c --status sum) || die "checksum mismatch for $ASSET: refusing to install"
say "signature and checksum verified"

# ---- libbpf --------------------------------------------------------------------------------
has_libbpf() {
  ldconfig -p 2>/dev/null | grep -q 'libbpf\.so\.1 ' ||
    ls /usr/lib/*/libbpf.so.1 /usr/lib/libbpf.so.1 /lib/*/libbpf.so.1 >/dev/null 2>&1
}
if ! has_libbpf; then
  if command -v apt-get >/dev/null 2>&1; then
    run apt-get install -y libbpf1
  elif command -v dnf >/dev/null 2>&1; then
    run dnf install -y libbpf
  elif command -v apk >/dev/null 2>&1; then
    run apk add libbpf
  else
    say "libbpf 1.x is missing and no known package manager is here: install it by hand;"
    say "until then x0tta6bl4 runs in fallback mode"
  fi
fi

# ---- install -------------------------------------------------------------------------------
# put SRC DEST MODE: installs when different; remembers what to undo if a later step fails.
CHANGED=0
put() {
  if [ -e "$2" ] && cmp -s "$1" "$2"; then
    say "unchanged: $2"
    return 0
  fi
  CHANGED=1
  if [ "$DRY" = 1 ]; then
    say "would install $2"
    return 0
  fi
  mkdir -p "$(dirname "$2")"
  if [ -e "$2" ]; then
    cp -p "$2" "$2.x0bak"
    BACKUPS="$BACKUPS $2"
  else
    INSTALLED="$INSTALLED $2"
  fi
  cp "$1" "$2.new.$$"
  chmod "$3" "$2.new.$$"
  mv -f "$2.new.$$" "$2"
  say "installed $2"
}

put "$TMP/$ASSET" "$BIN" 0755
if [ ! -e "$ETC/config.yaml" ]; then
  cat >"$TMP/config.yaml" <<CONFIG
# x0tta6bl4 configuration: every key is described in docs/CONFIG.md.
api:
  listen: "127.0.0.1:9477"
state_dir: $STATE
CONFIG
  put "$TMP/config.yaml" "$ETC/config.yaml" 0644
fi
if [ ! -e "$STATE/api-token" ]; then
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TMP/api-token"
  echo >>"$TMP/api-token"
  put "$TMP/api-token" "$STATE/api-token" 0600
fi
if [ "$SERVICE" = 1 ]; then
  cat >"$TMP/unit" <<'UNIT'
@UNIT@
UNIT
  sed -e "s|@BIN@|$BIN|g" -e "s|@ETC@|$ETC|g" -e "s|@STATE@|$STATE|g" "$TMP/unit" >"$TMP/unit.out"
  put "$TMP/unit.out" "$UNIT" 0644
  if have_systemd && [ "$DRY" = 0 ]; then
    id x0tta6bl4 >/dev/null 2>&1 || useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin x0tta6bl4
    chown -R x0tta6bl4:x0tta6bl4 "$STATE"
    systemctl daemon-reload
    systemctl enable x0tta6bl4.service >/dev/null
    if [ "$CHANGED" = 1 ]; then systemctl restart x0tta6bl4.service; fi
    say "service x0tta6bl4 enabled and running"
  fi
fi
if [ "$CHANGED" = 0 ]; then say "already installed: nothing to do"; fi
say "done: $("$BIN" version 2>/dev/null | head -1 || echo "$BIN")"
