#!/bin/bash
# install.sh: install xl-ha from a built source tree (docs/install.md).
#
#   ./install.sh [--prefix DIR] [--dry-run]       install or update
#   ./install.sh [--prefix DIR] [--dry-run] --uninstall
#
# Installs under PREFIX (default /):
#   usr/lib/xl-ha/          dist/src, package.json, the production node_modules,
#                           libxlha.so (the libxl shim, if built), install-manifest
#   usr/sbin/xl-ha          the command (a wrapper that runs node)
#   etc/xen/scripts/        vif-ha, block-ha (hotplug scripts, mode 755)
#   etc/udev/rules.d/65-xl-ha.rules
#   etc/systemd/system/xl-ha.service
#   etc/xen/xl-ha.conf      the commented template, only if there is none
#   var/lib/xl-ha/          the daemon's state (mode 0700)
# A PREFIX other than / is a real install location, not a staging root: the
# installed wrapper, unit, hooks and udev rules name the paths under PREFIX.
#
# The manifest lists every file (with its sha256 and mode) and every directory
# the install created; --uninstall removes exactly those (directories only when
# empty), except an xl-ha.conf changed since it was installed, which it keeps.
# A second run changes nothing that is already as it would install it.
#
# Environment: XLHA_SRC, the built source tree (default: this script's
# directory); XLHA_SRC_SHIM, the built shim to install (default
# $XLHA_SRC/libxl-shim/libxlha.so; empty: none).
set -eu

PROG=install.sh

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() {
  printf '%s: %s\nRun "%s --help" for the options.\n' "$PROG" "$*" "$0" >&2
  exit 2
}

usage() {
  cat <<'EOF'
Usage: install.sh [--prefix DIR] [--dry-run] [--uninstall]

Install xl-ha (daemon and CLI, libxl shim, hotplug scripts vif-ha and
block-ha, udev rules, systemd unit, /etc/xen/xl-ha.conf) from this built
source tree (npm ci && npm run build first).

Options:
  --prefix DIR   install under DIR instead of / (DIR/usr/lib/xl-ha, ...);
                 then systemctl and udevadm are not called.
  --dry-run, -n  print each action, change nothing.
  --uninstall    remove what the install manifest lists (keeps an
                 xl-ha.conf changed since install, and non-empty directories).
  -h, --help     show this help.

Environment:
  XLHA_SRC       the built source tree (default: the directory of install.sh).
  XLHA_SRC_SHIM  the built libxl shim to install (default
                 $XLHA_SRC/libxl-shim/libxlha.so; empty: install none).
EOF
}

# ---------------------------------------------------------------------------
# Options

PREFIX=/
DRY=0
ACTION=install
while [ $# -gt 0 ]; do
  case $1 in
    --prefix)
      [ $# -ge 2 ] || usage_error "--prefix needs a directory"
      PREFIX=$2
      shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    -n | --dry-run) DRY=1; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; [ $# -eq 0 ] || usage_error "unexpected argument: $1" ;;
    -*) usage_error "unknown option: $1" ;;
    *) usage_error "unexpected argument: $1" ;;
  esac
done

[ -n "$PREFIX" ] || usage_error "--prefix needs a directory"
case $PREFIX in
  /*) ;;
  *) PREFIX=$PWD/$PREFIX ;;
esac
if command -v realpath >/dev/null 2>&1; then
  PREFIX=$(realpath -m -- "$PREFIX")
fi
case $PREFIX in
  *[!A-Za-z0-9._/+@:,-]*)
    die "prefix '$PREFIX': use only letters, digits and . _ / + @ : , - (it is written into the wrapper, the unit and the hooks)" ;;
esac
if [ -e "$PREFIX" ] && [ ! -d "$PREFIX" ]; then
  die "prefix $PREFIX exists and is not a directory"
fi
# ROOT is the prefix without its trailing slash: "" for /.
ROOT=${PREFIX%/}

LIBREL=usr/lib/xl-ha
LIBDIR=$ROOT/$LIBREL
MANIFEST=$LIBDIR/install-manifest
CONFREL=etc/xen/xl-ha.conf
STATEREL=var/lib/xl-ha
UNITREL=etc/systemd/system/xl-ha.service
UDEVREL=etc/udev/rules.d/65-xl-ha.rules

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xl-ha-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

would() {
  if [ "$DRY" = 1 ]; then say "would $*"; else say "$*"; fi
}

# Old manifest: kind<TAB>sha256<TAB>mode<TAB>/path (path relative to the prefix).
OLD=$WORK/old-manifest
if [ -f "$MANIFEST" ]; then
  grep -v '^#' "$MANIFEST" >"$OLD" || :
else
  : >"$OLD"
fi

have() { command -v "$1" >/dev/null 2>&1; }

# Only with prefix /, and only when something they read changed.
reload_services() {
  if [ -n "$ROOT" ]; then
    return 0
  fi
  if [ "$1" = 1 ] && have systemctl; then
    would "run: systemctl daemon-reload"
    [ "$DRY" = 1 ] || systemctl daemon-reload || warn "systemctl daemon-reload failed"
  fi
  if [ "$2" = 1 ] && have udevadm; then
    would "run: udevadm control --reload"
    [ "$DRY" = 1 ] || udevadm control --reload || warn "udevadm control --reload failed"
  fi
}

# ---------------------------------------------------------------------------
# Uninstall

uninstall() {
  [ -f "$MANIFEST" ] || die "nothing to uninstall under $PREFIX: no install manifest ($MANIFEST)"
  if [ -z "$ROOT" ] && have systemctl; then
    if systemctl is-active --quiet xl-ha.service 2>/dev/null || systemctl is-enabled --quiet xl-ha.service 2>/dev/null; then
      die "xl-ha.service is enabled or running: run 'systemctl disable --now xl-ha' first"
    fi
  fi
  local kind sha mode path n=0 kept=0 unit=0 udev=0 cur
  : >"$WORK/rm-files"
  while IFS=$'\t' read -r kind sha mode path; do
    [ -n "$kind" ] || continue
    case $kind in
      f)
        if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then
          printf '%s\n' "$ROOT$path" >>"$WORK/rm-files"
          n=$((n + 1))
          case $path in
            "/$UNITREL") unit=1 ;;
            "/$UDEVREL") udev=1 ;;
          esac
        fi ;;
      c)
        [ -f "$ROOT$path" ] || continue
        cur=$(sha256sum <"$ROOT$path" | cut -d' ' -f1)
        if [ "$cur" = "$sha" ]; then
          would "remove $ROOT$path"
          [ "$DRY" = 1 ] || rm -f -- "$ROOT$path"
        else
          say "keeping $ROOT$path: changed since it was installed (remove it yourself if it is no longer wanted)"
          kept=$((kept + 1))
        fi ;;
      d) ;;
      *) warn "manifest line of unknown kind '$kind' ignored: $path" ;;
    esac
  done <"$OLD"
  if [ "$DRY" = 1 ]; then
    sed 's/^/would remove /' "$WORK/rm-files"
  elif [ -s "$WORK/rm-files" ]; then
    xargs -r -d '\n' rm -f -- <"$WORK/rm-files"
  fi
  if [ "$DRY" = 1 ]; then say "would remove $n installed files under $PREFIX"; else say "removed $n installed files under $PREFIX"; fi
  would "remove $MANIFEST"
  [ "$DRY" = 1 ] || rm -f -- "$MANIFEST"
  # Directories the install created, deepest first, each only if empty by now.
  awk -F'\t' '$1 == "d" { print $4 }' "$OLD" | LC_ALL=C sort -r >"$WORK/rm-dirs"
  while IFS= read -r path; do
    [ -d "$ROOT$path" ] || continue
    if [ "$DRY" = 1 ]; then
      say "would remove directory $ROOT$path if empty"
    elif rmdir -- "$ROOT$path" 2>/dev/null; then
      :
    else
      say "keeping directory $ROOT$path: not empty"
    fi
  done <"$WORK/rm-dirs"
  reload_services "$unit" "$udev"
  if [ -n "$ROOT" ] && { [ "$unit" = 1 ] || [ "$udev" = 1 ]; }; then
    say "not calling systemctl or udevadm for a prefix other than /: if the unit or the rules were linked into the system, remove those links, then run: systemctl daemon-reload; udevadm control --reload"
  fi
  if [ "$DRY" = 1 ]; then
    say "would uninstall xl-ha from $PREFIX (dry run: nothing changed)"
  elif [ "$kept" -gt 0 ]; then
    say "xl-ha uninstalled from $PREFIX, except the changed config kept above"
  else
    say "xl-ha uninstalled from $PREFIX"
  fi
}

if [ "$ACTION" = uninstall ]; then
  for tool in sha256sum awk xargs; do
    have "$tool" || die "missing prerequisite: $tool"
  done
  uninstall
  exit 0
fi

# ---------------------------------------------------------------------------
# Prerequisites

SRC=${XLHA_SRC:-$(dirname -- "$0")}
[ -d "$SRC" ] || die "source tree $SRC is not a directory (XLHA_SRC)"
SRC=$(cd -- "$SRC" && pwd -P)

missing=()
for tool in sha256sum stat find awk sed tar xargs cmp sort; do
  have "$tool" || missing+=("$tool (coreutils/findutils/tar/diffutils)")
done
if ! have node; then
  missing+=("node: Node.js >= 20.15 on PATH")
  NODE=
else
  NODE=$(command -v node)
  node_ver=$(node -p 'process.versions.node' 2>/dev/null) || node_ver=unknown
  major=${node_ver%%.*}
  minor=${node_ver#*.}
  minor=${minor%%.*}
  case $major.$minor in
    *[!0-9.]* | .* | *.) missing+=("node >= 20.15 ($NODE reports version $node_ver)") ;;
    *)
      if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 15 ]; }; then
        missing+=("node >= 20.15 ($NODE is $node_ver)")
      fi ;;
  esac
fi
if [ ! -f "$SRC/dist/src/cli/xl-ha.cjs" ]; then
  missing+=("a built dist/ in $SRC (dist/src/cli/xl-ha.cjs): run npm ci && npm run build first")
fi
if [ ! -d "$SRC/node_modules" ]; then
  missing+=("node_modules in $SRC: run npm ci && npm run build first")
fi
for f in package.json etc/xl-ha.conf etc/xl-ha.service hooks/vif-ha hooks/block-ha udev/xl-ha.rules; do
  [ -f "$SRC/$f" ] || missing+=("$SRC/$f (an incomplete source tree)")
done
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do
    printf '%s: missing prerequisite: %s\n' "$PROG" "$m" >&2
  done
  exit 1
fi

# The xen backend's needs: warnings only, the sim backend needs none of them.
have xl || warn "xl not found on PATH: the xen backend needs Xen's toolstack (the sim backend works without it)"
[ -x /etc/xen/scripts/vif-bridge ] || warn "/etc/xen/scripts/vif-bridge not found: vif-ha wraps it (Xen's hotplug scripts); the sim backend works without it"
[ -x /etc/xen/scripts/block ] || warn "/etc/xen/scripts/block not found: block-ha wraps it (Xen's hotplug scripts)"
SHIM=${XLHA_SRC_SHIM-$SRC/libxl-shim/libxlha.so}
if [ -z "$SHIM" ] || [ ! -f "$SHIM" ]; then
  warn "the libxl shim ${SHIM:-libxlha.so} is not built (make -C libxl-shim, needs libxen-dev): installing without it; the xen backend will not load, the sim backend still works"
  SHIM=
fi

# ---------------------------------------------------------------------------
# What to install: entries kind<TAB>mode<TAB>destrel<TAB>source. Kind f is a
# program file, c a config file (installed only when absent).

GEN=$WORK/gen
mkdir -p "$GEN"
ENTRIES=$WORK/entries
: >"$ENTRIES"

# The production packages: npm ls, as test/xen-lab/stage-xlha.sh; without npm,
# the lock file's non-dev packages that are there.
PKGS=$WORK/packages
if have npm && (cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null) >"$WORK/npm-ls"; then
  while IFS= read -r dir; do
    rel=${dir#"$SRC"/}
    case $rel in node_modules/*) printf '%s\n' "$rel" ;; esac
  done <"$WORK/npm-ls" >"$PKGS"
  how="npm ls --omit=dev"
elif [ -f "$SRC/package-lock.json" ]; then
  # Each non-dev package of the lock that is there; one that is not and is not
  # optional (another platform's binary) means an incomplete node_modules.
  node -e '
    const fs = require("fs"), path = require("path"), src = process.argv[1];
    const lock = JSON.parse(fs.readFileSync(path.join(src, "package-lock.json"), "utf8"));
    const missing = [];
    for (const [k, v] of Object.entries(lock.packages || {})) {
      if (!k.startsWith("node_modules/") || v.dev || v.link) continue;
      if (fs.existsSync(path.join(src, k))) console.log(k);
      else if (!v.optional && !v.devOptional) missing.push(k);
    }
    if (missing.length) { console.error(missing.join(" ")); process.exit(3); }
  ' "$SRC" >"$PKGS" 2>"$WORK/lock-missing" ||
    die "node_modules in $SRC lacks packages of package-lock.json ($(cat "$WORK/lock-missing")): run npm ci && npm run build first"
  how="package-lock.json (npm ls was not usable)"
else
  die "cannot tell the production packages: npm ls --omit=dev failed in $SRC and there is no package-lock.json (run npm ci there)"
fi
npkgs=$(wc -l <"$PKGS")

# Tree files: mode 755 when the source has an execute bit, else 644. (find -H:
# node_modules may be a symbolic link to another tree's.)
{
  printf '644\tpackage.json\n'
  (cd "$SRC" && find -H dist/src -type f -printf '%m\t%p\n')
  (cd "$SRC" && find -H node_modules -type f -printf '%m\t%p\n') |
    awk -F'\t' -v pkgfile="$PKGS" '
      BEGIN { while ((getline l < pkgfile) > 0) pkg[l] = 1 }
      $2 ~ /\/node_modules\/\.bin\// || $2 ~ /^node_modules\/\.bin\// { next }
      {
        p = $2
        while (match(p, /\/[^\/]*$/)) {
          p = substr(p, 1, RSTART - 1)
          if (p in pkg) { print; next }
        }
      }'
} | awk -F'\t' -v src="$SRC" -v lib="$LIBREL" '
  {
    m = substr($1, length($1) - 2); x = 0
    for (i = 1; i <= 3; i++) if (substr(m, i, 1) % 2 == 1) x = 1
    printf "f\t%s\t%s/%s\t%s/%s\n", (x ? "755" : "644"), lib, $2, src, $2
  }' >>"$ENTRIES"

if grep -q '[\]' "$ENTRIES"; then
  die "a file name under $SRC contains a backslash: not supported"
fi

# Generated and copied files, with the prefix's paths written in.
sed_root=$(printf '%s' "$ROOT" | sed 's/[&|\\]/\\&/g')
gen() { # gen MODE DESTREL [KIND]: the file $GEN/DESTREL, from stdin
  mkdir -p "$GEN/$(dirname -- "$2")"
  cat >"$GEN/$2"
  printf '%s\t%s\t%s\t%s\n' "${3:-f}" "$1" "$2" "$GEN/$2" >>"$ENTRIES"
}

case $NODE in
  /usr/local/sbin/* | /usr/local/bin/* | /usr/sbin/* | /usr/bin/* | /sbin/* | /bin/*)
    node_cmd=node ;;
  *)
    # Not on systemd's default PATH: the wrapper names it.
    node_cmd=$NODE
    warn "node is $NODE, outside the system's default PATH: the wrapper runs that binary" ;;
esac
# The node options the daemon runs with: those on the entry's #! line, their one definition
# (src/cli/xl-ha.cts says why each is there); the wrapper runs node itself, so it passes them.
node_flags=$(sed -n '1s/^#!\/usr\/bin\/env -S node\( .*\)$/\1/p' "$SRC/dist/src/cli/xl-ha.cjs")
# The wrapper's own ${...} are for it to expand, not this script.
# shellcheck disable=SC2016
{
  printf '#!/bin/sh\n'
  printf '# xl-ha: the xl-ha command, written by install.sh (%s).\n' "$LIBDIR"
  if [ -n "$ROOT" ]; then
    printf '# Installed under the prefix %s: its config and state unless set in the environment.\n' "$ROOT"
    printf ': "${XLHA_CONF:=%s/%s}"\n' "$ROOT" "$CONFREL"
    printf ': "${XLHA_STATE_DIR:=%s/%s}"\n' "$ROOT" "$STATEREL"
    printf 'export XLHA_CONF XLHA_STATE_DIR\n'
    if [ -n "$SHIM" ]; then
      printf ': "${XLHA_SHIM:=%s/libxlha.so}"\n' "$LIBDIR"
      printf 'export XLHA_SHIM\n'
    fi
  fi
  printf 'exec %s%s %s/dist/src/cli/xl-ha.cjs "$@"\n' "$node_cmd" "$node_flags" "$LIBDIR"
} | gen 755 usr/sbin/xl-ha

for h in vif-ha block-ha; do
  sed "s|^XLHA_BIN=\${XLHA_BIN:-xl-ha}\$|XLHA_BIN=\${XLHA_BIN:-$sed_root/usr/sbin/xl-ha}|" "$SRC/hooks/$h" |
    gen 755 "etc/xen/scripts/$h"
done
sed "s|/etc/xen/scripts/|$sed_root/etc/xen/scripts/|g" "$SRC/udev/xl-ha.rules" | gen 644 "$UDEVREL"
sed "s|/usr/sbin/xl-ha|$sed_root/usr/sbin/xl-ha|g" "$SRC/etc/xl-ha.service" | gen 644 "$UNITREL"
[ -z "$SHIM" ] || gen 644 "$LIBREL/libxlha.so" <"$SHIM"
gen 644 "$CONFREL" c <"$SRC/etc/xl-ha.conf"

# ---------------------------------------------------------------------------
# The plan: compare each entry with what is installed.

cut -f4 "$ENTRIES" | xargs -r -d '\n' sha256sum -- >"$WORK/src-sums"
: >"$WORK/dst-list"
while IFS=$'\t' read -r _ _ rel _; do
  t=$ROOT/$rel
  if [ -d "$t" ] && [ ! -L "$t" ]; then
    die "$t is a directory: the install needs a file there"
  fi
  if [ -f "$t" ]; then printf '%s\n' "$t" >>"$WORK/dst-list"; fi
done <"$ENTRIES"
xargs -r -d '\n' sha256sum -- <"$WORK/dst-list" >"$WORK/dst-sums"
xargs -r -d '\n' stat -c '%a %n' -- <"$WORK/dst-list" >"$WORK/dst-modes"

# plan: action<TAB>kind<TAB>mode<TAB>destrel<TAB>source; manifest lines beside it.
awk -F'\t' -v root="$ROOT" -v work="$WORK" '
  function rest(s, n) { return substr(s, n) }
  FILENAME == work "/src-sums" { ssum[rest($0, 67)] = substr($0, 1, 64); next }
  FILENAME == work "/dst-sums" { dsum[rest($0, 67)] = substr($0, 1, 64); next }
  FILENAME == work "/dst-modes" { i = index($0, " "); dmode[rest($0, i + 1)] = substr($0, 1, i - 1); next }
  FILENAME == work "/old-manifest" { okind[$4] = $1; osum[$4] = $2; omode[$4] = $3; next }
  {
    kind = $1; mode = $2; rel = $3; src = $4; t = root "/" rel; p = "/" rel
    want[p] = 1
    s = ssum[src]
    if (kind == "c") {
      if (t in dsum) {
        act = "keep-conf"
        if (okind[p] == "c") printf "c\t%s\t%s\t%s\n", osum[p], omode[p], p > (work "/manifest.new")
      } else {
        act = "new"
        printf "c\t%s\t%s\t%s\n", s, mode, p > (work "/manifest.new")
      }
    } else {
      if (!(t in dsum)) act = "new"
      else if (dsum[t] != s) act = "update"
      else if (dmode[t] != mode) act = "chmod"
      else act = "same"
      printf "f\t%s\t%s\t%s\n", s, mode, p > (work "/manifest.new")
    }
    printf "%s\t%s\t%s\t%s\t%s\n", act, kind, mode, rel, src > (work "/plan")
  }
  END {
    for (p in okind) if (okind[p] == "f" && !(p in want)) print p > (work "/stale")
  }' "$WORK/src-sums" "$WORK/dst-sums" "$WORK/dst-modes" "$OLD" "$ENTRIES"
touch "$WORK/stale"

# Directories: every ancestor of an entry, and the state directory.
{
  cut -f4 "$WORK/plan"
  printf '%s/x\n' "$STATEREL"
} | awk '{ p = $0; while (match(p, /\/[^\/]*$/)) { p = substr(p, 1, RSTART - 1); if (!(p in seen)) { seen[p] = 1; print p } } }' |
  LC_ALL=C sort >"$WORK/dirs"
: >"$WORK/mkdirs"
while IFS= read -r d; do
  if [ -d "$ROOT/$d" ]; then
    :
  elif [ -e "$ROOT/$d" ] || [ -L "$ROOT/$d" ]; then
    die "$ROOT/$d exists and is not a directory"
  else
    printf '%s\n' "$d" >>"$WORK/mkdirs"
  fi
done <"$WORK/dirs"
{
  # Directories an earlier run created stay the install's own.
  awk -F'\t' '$1 == "d"' "$OLD" | while IFS=$'\t' read -r _ _ m p; do
    [ ! -d "$ROOT$p" ] || printf 'd\t-\t%s\t%s\n' "$m" "$p"
  done
  while IFS= read -r d; do
    if [ "$d" = "$STATEREL" ]; then m=700; else m=755; fi
    printf 'd\t-\t%s\t/%s\n' "$m" "$d"
  done <"$WORK/mkdirs"
} >>"$WORK/manifest.new"
{
  printf '# xl-ha install manifest, written by install.sh: kind (f file, c config, d directory), sha256, mode, path under the prefix.\n'
  printf '# install.sh --uninstall removes exactly these (a changed config and non-empty directories stay).\n'
  LC_ALL=C sort -t$'\t' -k4,4 -k1,1 -u "$WORK/manifest.new"
} >"$WORK/manifest"

# ---------------------------------------------------------------------------
# Carry it out.

changes=0
unit=0
udev=0
nnew=0
nupd=0
nmode=0

if [ ! -d "$PREFIX" ]; then
  would "create directory $PREFIX"
  [ "$DRY" = 1 ] || mkdir -p -- "$PREFIX"
  changes=$((changes + 1))
fi
nlibdirs=0
while IFS= read -r d; do
  if [ "$d" = "$STATEREL" ]; then m=700; else m=755; fi
  case $d in
    "$LIBREL"/*) nlibdirs=$((nlibdirs + 1)); [ "$DRY" = 0 ] || say "would create directory $ROOT/$d (mode $m)" ;;
    *) would "create directory $ROOT/$d (mode $m)" ;;
  esac
  [ "$DRY" = 1 ] || mkdir -m "$m" -- "$ROOT/$d"
  changes=$((changes + 1))
done <"$WORK/mkdirs"
[ "$DRY" = 1 ] || [ "$nlibdirs" -eq 0 ] || say "created $nlibdirs directories under $LIBDIR"
if [ -d "$ROOT/$STATEREL" ] && ! grep -qx "$STATEREL" "$WORK/mkdirs"; then
  m=$(stat -c '%a' -- "$ROOT/$STATEREL")
  if [ "$m" != 700 ]; then
    would "chmod 700 $ROOT/$STATEREL (was $m)"
    [ "$DRY" = 1 ] || chmod 700 -- "$ROOT/$STATEREL"
    changes=$((changes + 1))
  fi
fi

# Tree files in one tar each way; the others one by one.
: >"$WORK/tree-copy"
: >"$WORK/gen-copy"
: >"$WORK/mode-644"
: >"$WORK/mode-755"
while IFS=$'\t' read -r act kind mode rel src; do
  t=$ROOT/$rel
  case $act in
    same) continue ;;
    keep-conf)
      if ! cmp -s -- "$src" "$t"; then
        say "keeping $t as it is (the template differs: see $SRC/etc/xl-ha.conf)"
      fi
      continue ;;
    new) nnew=$((nnew + 1)) ;;
    update) nupd=$((nupd + 1)) ;;
    chmod) nmode=$((nmode + 1)) ;;
  esac
  changes=$((changes + 1))
  case $rel in
    "$UNITREL") unit=1 ;;
    "$UDEVREL") udev=1 ;;
  esac
  case $src in
    "$SRC"/*) tree=1 ;;
    *) tree=0 ;;
  esac
  if [ "$DRY" = 1 ] || [ "$tree" = 0 ]; then
    case $act in
      new) would "install $t (mode $mode)" ;;
      update) would "update $t (mode $mode)" ;;
      chmod) would "chmod $mode $t" ;;
    esac
  fi
  if [ "$act" != chmod ]; then
    if [ "$tree" = 1 ]; then
      printf '%s\n' "${src#"$SRC"/}" >>"$WORK/tree-copy"
    else
      printf '%s\n' "$rel" >>"$WORK/gen-copy"
    fi
  fi
  printf '%s\n' "$t" >>"$WORK/mode-$mode"
done <"$WORK/plan"

while IFS= read -r p; do
  would "remove $ROOT$p (no longer installed)"
  [ "$DRY" = 1 ] || rm -f -- "$ROOT$p"
  changes=$((changes + 1))
done <"$WORK/stale"

if [ "$DRY" = 0 ]; then
  if [ -s "$WORK/tree-copy" ]; then
    tar -C "$SRC" --no-recursion -cf - -T "$WORK/tree-copy" |
      tar -C "$LIBDIR" -xf - --no-same-owner --no-same-permissions
  fi
  if [ -s "$WORK/gen-copy" ]; then
    tar -C "$GEN" --no-recursion -cf - -T "$WORK/gen-copy" |
      tar -C "$PREFIX" -xf - --no-same-owner --no-same-permissions
  fi
  xargs -r -d '\n' chmod 644 -- <"$WORK/mode-644"
  xargs -r -d '\n' chmod 755 -- <"$WORK/mode-755"
  ntree=$(wc -l <"$WORK/tree-copy")
  [ "$ntree" -eq 0 ] || say "copied $ntree files into $LIBDIR (dist/src, package.json, $npkgs production packages from $how)"
fi

if ! cmp -s -- "$WORK/manifest" "$MANIFEST" 2>/dev/null; then
  would "write $MANIFEST"
  if [ "$DRY" = 0 ]; then
    cp -- "$WORK/manifest" "$MANIFEST.tmp"
    chmod 644 -- "$MANIFEST.tmp"
    mv -f -- "$MANIFEST.tmp" "$MANIFEST"
  fi
fi

nfiles=$(wc -l <"$WORK/plan")
if [ "$changes" -eq 0 ]; then
  say "xl-ha is already installed under $PREFIX as this tree would install it ($nfiles files): nothing to change"
else
  verb=installed
  [ "$DRY" = 0 ] || verb="would install"
  say "$verb xl-ha under $PREFIX: $nnew new, $nupd updated, $nmode mode changes of $nfiles files"
fi

reload_services "$unit" "$udev"
if [ -n "$ROOT" ]; then
  say "not calling systemctl or udevadm for a prefix other than /. To use this install:"
  say "  ln -s $ROOT/$UNITREL /etc/systemd/system/xl-ha.service && systemctl daemon-reload"
  say "  (udev alternative only with run_hotplug_scripts=0) ln -s $ROOT/$UDEVREL /etc/udev/rules.d/ && udevadm control --reload"
fi
if [ -z "$SHIM" ]; then
  say "no libxlha.so installed: the xen backend will not load (the sim backend works); build it with make -C libxl-shim and run install.sh again"
fi
say "Next: edit $ROOT/$CONFREL, then run: systemctl enable --now xl-ha"
