#!/bin/sh
# x0tta6bl4 installer: curl -fsSL URL/install.sh | sh -s -- [options]
#
# Checks the machine first and says what will and will not work, then downloads SHA256SUMS and
# verifies its signature (Ed25519, with the public key below) before believing the version and
# the expiry it names; refuses a version older than the one installed (unless
# --allow-downgrade), downloads the binary and checks its sum, installs libbpf when it is
# missing, then the binary, a config file, an API token (mode 0600) and a systemd unit that runs
# as its own user with only the capabilities it needs. Running it twice changes nothing the
# second time; a failure leaves nothing half-done. With --auto-upgrade it also installs a timer
# that runs `x0tta6bl4 upgrade` once a day.
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
  --base-url URL     where releases are, https:// (or X0TTA6BL4_BASE_URL)
  --insecure-http    accept an http:// release address (anyone on the path can then hold
                     releases back until the signed SHA256SUMS expires); with --auto-upgrade
                     the daily upgrade accepts it too
  --allow-downgrade  install a version older than the one installed
  --no-service       do not install or start the systemd unit
  --auto-upgrade     also install x0tta6bl4-upgrade.timer: once a day, at a moment in the six
                     hours after midnight that each machine picks and keeps, it runs
                     'x0tta6bl4 upgrade' from the release address this run uses (--base-url),
                     which verifies, swaps, restarts and rolls back as it does by hand; the
                     outcome goes to <state>/upgrade.json. Needs the service
  --no-auto-upgrade  remove that timer. Without either option a machine keeps what it has: a
                     timer installed earlier stays (rewritten for this run's address and
                     paths); --uninstall removes it
  --dry-run          say what would be done, change nothing
  --uninstall        remove the binary and the units (keep config and data)
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
AUTO=""
INSECURE_HTTP=0
ALLOW_DOWNGRADE=0
DRY=0
UNINSTALL=0
PURGE=0
while [ $# -gt 0 ]; do
  case $1 in
    --version) VERSION=${2:?--version needs a value}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
    --base-url) BASE_URL=${2:?--base-url needs a URL}; shift ;;
    --no-service) SERVICE=0 ;;
    --insecure-http) INSECURE_HTTP=1 ;;
    --allow-downgrade) ALLOW_DOWNGRADE=1 ;;
    --auto-upgrade) AUTO=1 ;;
    --no-auto-upgrade) AUTO=0 ;;
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
UPGRADE_SERVICE=$UNITDIR/x0tta6bl4-upgrade.service
UPGRADE_TIMER=$UNITDIR/x0tta6bl4-upgrade.timer

run() {
  if [ "$DRY" = 1 ]; then say "would run: $*"; else "$@"; fi
}

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# ---- uninstall -----------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if [ "$SERVICE" = 1 ] && have_systemd; then
    # The timer first, so that no upgrade starts while the rest goes.
    if [ -f "$UPGRADE_TIMER" ]; then run systemctl disable --now x0tta6bl4-upgrade.timer || true; fi
    if [ -f "$UPGRADE_SERVICE" ]; then run systemctl stop x0tta6bl4-upgrade.service || true; fi
    if [ -f "$UNIT" ]; then run systemctl disable --now x0tta6bl4.service || true; fi
  fi
  # $BIN.new: what an interrupted upgrade may have left.
  for f in "$BIN" "$BIN.prev" "$BIN.new" "$UNIT" "$UPGRADE_SERVICE" "$UPGRADE_TIMER"; do
    if [ -e "$f" ]; then
      run rm -f "$f"
      [ "$DRY" = 1 ] || say "removed $f"
    fi
  done
  if [ "$SERVICE" = 1 ] && have_systemd; then run systemctl daemon-reload || true; fi
  if [ "$PURGE" = 1 ]; then
    for d in "$ETC" "$STATE"; do
      if [ -e "$d" ]; then
        run rm -rf "$d"
        [ "$DRY" = 1 ] || say "removed $d"
      fi
    done
  else
    say "kept $ETC and $STATE (use --purge to remove them)"
  fi
  exit 0
fi

# ---- the automatic upgrade: decided before anything changes -------------------------------
# Remembered: without --auto-upgrade or --no-auto-upgrade, a timer installed by an earlier run
# stays, rewritten for this run (an operator who re-runs the installer to repair or move to a
# version should not lose upgrades silently; turning them off is said explicitly). With
# --no-service the units are left as they are.
if [ -z "$AUTO" ] && [ "$SERVICE" = 1 ] && [ -e "$UPGRADE_TIMER" ]; then
  AUTO=1
  say "keeping the automatic upgrade timer installed earlier (--no-auto-upgrade removes it)"
fi
if [ "$AUTO" = 1 ] && [ "$SERVICE" = 0 ]; then
  die "--auto-upgrade needs the service (an upgrade restarts x0tta6bl4.service): drop --no-service"
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
  https://*) ;;
  http://*)
    [ "$INSECURE_HTTP" = 1 ] || die "the release address $BASE_URL is plain http, where anyone" \
      "on the path can hold releases back: use https://, or pass --insecure-http to accept it"
    ;;
  *) die "the release address $BASE_URL is not https://" ;;
esac
if [ "$AUTO" = 1 ]; then
  case $BASE_URL in
    *[[:space:]\"\'\\]*) die "--auto-upgrade: a release address with spaces, quotes or backslashes cannot go into a unit: $BASE_URL" ;;
  esac
fi
case $PUBLIC_KEY in
  *BEGIN*) ;;
  *) die "this install.sh carries no release key: use the one published with a release" ;;
esac
command -v openssl >/dev/null 2>&1 ||
  die "openssl is needed to verify the release signature: install it (apt-get install openssl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed (coreutils)"
# fetch URL FILE: FILE "-" is standard output.
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

# ---- versions: compared as compareVersions in src/cli/upgrade.ts compares them ---------------
# valid_version V: MAJOR.MINOR.PATCH[-PRERELEASE] as semver writes them, a leading v allowed.
valid_version() {
  id='(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)'
  core='(0|[1-9][0-9]{0,8})'
  [ ${#1} -le 64 ] && printf '%s\n' "$1" | grep -Eqx "v?$core\\.$core\\.$core(-$id(\\.$id)*)?"
}

# version_cmp A B: -1, 0 or 1 as version A is older than, the same as or newer than B (semver
# precedence: a pre-release comes before its release).
version_cmp() {
  set -- "${1#v}" "${2#v}"
  ap="" bp=""
  case $1 in *-*) ap=${1#*-} ;; esac
  case $2 in *-*) bp=${2#*-} ;; esac
  r=$(parts_cmp "${1%%-*}" "${2%%-*}")
  if [ "$r" != 0 ]; then
    echo "$r"
  elif [ -n "$ap" ] && [ -n "$bp" ]; then
    parts_cmp "$ap" "$bp"
  elif [ -n "$ap" ]; then
    echo -1
  elif [ -n "$bp" ]; then
    echo 1
  else
    echo 0
  fi
}

# parts_cmp A B: dot-separated parts in turn: numbers as numbers and before words, words in
# ASCII order; the one with fewer parts, all equal, comes first.
parts_cmp() {
  x=$1. y=$2.
  while [ -n "$x" ] && [ -n "$y" ]; do
    p=${x%%.*} q=${y%%.*} x=${x#*.} y=${y#*.}
    [ "$p" = "$q" ] && continue
    case $p in *[!0-9]*) np=0 ;; *) np=1 ;; esac
    case $q in *[!0-9]*) nq=0 ;; *) nq=1 ;; esac
    if [ "$np$nq" = 11 ] && [ ${#p} -ne ${#q} ]; then
      if [ ${#p} -lt ${#q} ]; then echo -1; else echo 1; fi
    elif [ "$np" != "$nq" ]; then
      if [ "$np" = 1 ]; then echo -1; else echo 1; fi
    elif [ "$(printf '%s\n%s\n' "$p" "$q" | LC_ALL=C sort | head -n 1)" = "$p" ]; then
      echo -1
    else
      echo 1
    fi
    return
  done
  if [ -n "$x" ]; then echo 1; elif [ -n "$y" ]; then echo -1; else echo 0; fi
}

# ---- download and verify -------------------------------------------------------------------
# get URL FILE MAX: downloads into FILE, refusing more than MAX bytes; an endless answer is cut
# there, not written until the disk is full. The limits are those of src/cli/upgrade.ts.
get() {
  { fetch "$1" - && echo 0 >"$2.rc" || echo 1 >"$2.rc"; } | head -c "$(($3 + 1))" >"$2"
  [ "$(wc -c <"$2")" -le "$3" ] || die "$1 is larger than $3 bytes: download aborted (no" \
    "release file is that large: check the release address; a server that does this is hostile)"
  [ "$(cat "$2.rc")" = 0 ] || die "cannot download $1"
}
ASSET=x0tta6bl4-linux-$ARCH
URL=${BASE_URL%/}/$VERSION
say "downloading $URL/$ASSET"
get "$URL/SHA256SUMS" "$TMP/SHA256SUMS" 16384
get "$URL/SHA256SUMS.sig" "$TMP/SHA256SUMS.sig" 1024
printf '%s\n' "$PUBLIC_KEY" >"$TMP/release.pub"
openssl pkeyutl -verify -pubin -inkey "$TMP/release.pub" -rawin -in "$TMP/SHA256SUMS" \
  -sigfile "$TMP/SHA256SUMS.sig" >/dev/null 2>&1 ||
  die "the signature of SHA256SUMS does not verify: refusing to install"
# Only now, signed, the version and the expiry that SHA256SUMS names are believed.
NEW=$(sed -n '1s/^# version: \([^ ]*\)$/\1/p' "$TMP/SHA256SUMS")
EXPIRES=$(sed -n '2s/^# expires: \([0-9]\{1,12\}\) (\([^ ]*\))$/\1 \2/p' "$TMP/SHA256SUMS")
if ! valid_version "$NEW" || [ -z "$EXPIRES" ]; then
  die "SHA256SUMS does not begin with its signed '# version:' and '# expires:' lines" \
    "(a release made before versions were signed): refusing to install"
fi
if [ "$VERSION" = latest ]; then
  # An old copy of latest/, served on and on, would keep this machine from newer releases.
  [ "${EXPIRES% *}" -gt "$(date +%s)" ] || die "the signed SHA256SUMS at $URL expired on" \
    "${EXPIRES#* }: a mirror may be serving an old copy to keep machines from newer releases" \
    "(a freeze attack), or the publisher has not signed it again; check this machine's clock too"
elif [ "${NEW#v}" != "${VERSION#v}" ]; then
  die "$URL holds version $NEW, not $VERSION: refusing to install"
fi
if [ -e "$BIN" ]; then
  HAVE=$("$BIN" version 2>/dev/null | sed -n '1s/^x0tta6bl4 \([^ ]*\).*$/\1/p')
  if ! valid_version "$HAVE"; then
    say "cannot tell the version of $BIN: installing $NEW over it without comparing"
  elif [ "$(version_cmp "$NEW" "$HAVE")" = -1 ]; then
    [ "$ALLOW_DOWNGRADE" = 1 ] || die "$NEW is older than the installed $HAVE: refusing to" \
      "downgrade (a mirror that serves an old release may be rolling machines back to its" \
      "holes); pass --allow-downgrade to install it anyway"
    say "downgrading from $HAVE to $NEW (--allow-downgrade)"
  fi
fi
get "$URL/$ASSET" "$TMP/$ASSET" 268435456
grep "  $ASSET\$" "$TMP/SHA256SUMS" >"$TMP/sum" || die "SHA256SUMS does not list $ASSET"
(cd "$TMP" && sha256sum -c --status sum) || die "checksum mismatch for $ASSET: refusing to install"
say "signature and checksum verified: $NEW"

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
  # A fresh name beside the target that no one can know in advance: cp creates it (O_EXCL, the
  # mode set from the start by -p), so a link that the directory's owner planted (the state
  # directory is the service user's) is never written through; mv renames it over the target,
  # which replaces a link there instead of following it.
  chmod "$3" "$1"
  new=$(mktemp -u "$2.new.XXXXXXXX")
  cp -p "$1" "$new"
  mv -f "$new" "$2"
  say "installed $2"
}

# drop FILE: removes it, kept aside until the end so that a failure puts it back.
drop() {
  [ -e "$1" ] || return 0
  CHANGED=1
  if [ "$DRY" = 1 ]; then
    say "would remove $1"
    return 0
  fi
  mv -f "$1" "$1.x0bak"
  BACKUPS="$BACKUPS $1"
  say "removed $1"
}

# sed_value V: V for the replacement side of s|...|...| (backslash, & and | escaped).
sed_value() { printf '%s\n' "$1" | sed -e 's/[\\&|]/\\&/g'; }
# unit_word V: V as one word of a unit's command line (systemd expands % and $; doubled, they
# stay literal).
unit_word() { printf '%s\n' "$1" | sed -e 's/%/%%/g' -e 's/[$]/$$/g'; }

# put_unit TEMPLATE DEST: the template with this machine's paths and release address (and
# --insecure-http when this run was given it), installed.
INSECURE_ARG=""
if [ "$INSECURE_HTTP" = 1 ]; then INSECURE_ARG=" --insecure-http"; fi
put_unit() {
  sed -e "s|@BINDIR@|$(sed_value "$PREFIX/bin")|g" -e "s|@BIN@|$(sed_value "$BIN")|g" \
    -e "s|@ETC@|$(sed_value "$ETC")|g" -e "s|@STATE@|$(sed_value "$STATE")|g" \
    -e "s|@RELEASE_URL@|$(sed_value "$(unit_word "${BASE_URL%/}")")|g" \
    -e "s|@INSECURE_HTTP@|$INSECURE_ARG|g" "$1" >"$1.out"
  put "$1.out" "$2" 0644
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
  put_unit "$TMP/unit" "$UNIT"
fi
SERVICE_CHANGED=$CHANGED

# The automatic upgrade: a timer that starts a oneshot `x0tta6bl4 upgrade` once a day.
CHANGED=0
if [ "$AUTO" = 1 ]; then
  cat >"$TMP/upgrade.service" <<'UPGRADE_SERVICE'
@UPGRADE_SERVICE@
UPGRADE_SERVICE
  cat >"$TMP/upgrade.timer" <<'UPGRADE_TIMER'
@UPGRADE_TIMER@
UPGRADE_TIMER
  put_unit "$TMP/upgrade.service" "$UPGRADE_SERVICE"
  put_unit "$TMP/upgrade.timer" "$UPGRADE_TIMER"
elif [ "$AUTO" = 0 ] && { [ -e "$UPGRADE_TIMER" ] || [ -e "$UPGRADE_SERVICE" ]; }; then
  if have_systemd; then run systemctl disable --now x0tta6bl4-upgrade.timer || true; fi
  drop "$UPGRADE_TIMER"
  drop "$UPGRADE_SERVICE"
fi
UPGRADE_CHANGED=$CHANGED

if have_systemd; then
  if [ "$SERVICE" = 1 ]; then
    if ! id x0tta6bl4 >/dev/null 2>&1; then
      run useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin x0tta6bl4
    fi
    run chown -R x0tta6bl4:x0tta6bl4 "$STATE"
    run systemctl daemon-reload
    run systemctl enable x0tta6bl4.service >/dev/null
    if [ "$SERVICE_CHANGED" = 1 ]; then run systemctl restart x0tta6bl4.service; fi
    [ "$DRY" = 1 ] || say "service x0tta6bl4 enabled and running"
  elif [ "$UPGRADE_CHANGED" = 1 ]; then
    run systemctl daemon-reload
  fi
  if [ "$AUTO" = 1 ]; then
    run systemctl enable x0tta6bl4-upgrade.timer >/dev/null
    # A changed timer is restarted so that its new schedule counts from now.
    if [ "$UPGRADE_CHANGED" = 1 ]; then
      run systemctl restart x0tta6bl4-upgrade.timer
    else
      run systemctl start x0tta6bl4-upgrade.timer
    fi
    [ "$DRY" = 1 ] || say "automatic upgrade enabled: systemctl list-timers x0tta6bl4-upgrade.timer"
  fi
elif [ "$AUTO" = 1 ]; then
  say "systemd is not running here: x0tta6bl4-upgrade.timer is not enabled" \
    "(once it runs: systemctl enable --now x0tta6bl4-upgrade.timer)"
fi
if [ "$SERVICE_CHANGED$UPGRADE_CHANGED" = 00 ]; then say "already installed: nothing to do"; fi
say "done: $("$BIN" version 2>/dev/null | head -1 || echo "$BIN")"
