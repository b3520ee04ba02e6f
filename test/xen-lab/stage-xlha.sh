#!/bin/bash
# Stage xl-ha into the dom0 root filesystem: /opt/xl-ha (dist/, package.json, production
# node_modules, libxl-shim/libxlha.so if built), the host's node binary as /usr/local/bin/node
# (the host and dom0 are both Debian bookworm) and the /usr/local/bin/xl-ha wrapper.
# Usage: stage-xlha.sh <project root> <node binary>
set -euo pipefail
P=$(cd "${1:?project root}" && pwd); NODE=${2:?node binary}
L=${XENLAB_DIR:-/var/tmp/xenlab}; R=$L/rootfs
[ -d "$R/usr" ] || { echo "no rootfs in $R: run setup.sh" >&2; exit 1; }
[ -f "$P/dist/src/cli/xl-ha.cjs" ] || { echo "$P/dist/src/cli/xl-ha.cjs missing: build the project first" >&2; exit 1; }
D=$R/opt/xl-ha
rm -rf "$D"; mkdir -p "$D/node_modules" "$R/usr/local/bin"
cp -a "$P/dist" "$P/package.json" "$D/"
# what install.sh installs besides the build (the xl-create-ha scenario runs /opt/xl-ha/install.sh)
cp -a "$P/install.sh" "$P/hooks" "$P/udev" "$P/etc" "$D/"
[ -f "$P/package-lock.json" ] && cp -a "$P/package-lock.json" "$D/"
# production dependencies only (npm ls lists every package directory of the prod tree)
n=0
if list=$(cd "$P" && npm ls --omit=dev --all --parseable 2>/dev/null); then
  while IFS= read -r dir; do
    [ "$dir" = "$P" ] && continue
    rel=${dir#"$P"/}
    case "$rel" in node_modules/*) ;; *) continue ;; esac
    mkdir -p "$D/$(dirname "$rel")"
    [ -e "$D/$rel" ] || { cp -a "$dir" "$D/$rel"; n=$((n+1)); }
  done <<< "$list"
  echo "staged $n production packages"
else
  echo "npm ls failed: copying all of node_modules"
  cp -a "$P/node_modules/." "$D/node_modules/"
fi
if [ -f "$P/libxl-shim/libxlha.so" ]; then
  mkdir -p "$D/libxl-shim"; cp -a "$P/libxl-shim/libxlha.so" "$D/libxl-shim/"
  echo "staged libxl-shim/libxlha.so"
else
  echo "no libxl-shim/libxlha.so to stage"
fi
cp "$NODE" "$R/usr/local/bin/node"; chmod 755 "$R/usr/local/bin/node"
cat > "$R/usr/local/bin/xl-ha" <<'W'
#!/bin/sh
exec node /opt/xl-ha/dist/src/cli/xl-ha.cjs "$@"
W
chmod 755 "$R/usr/local/bin/xl-ha"
echo "staged xl-ha: $(du -sh "$D" | cut -f1) in /opt/xl-ha, node $("$NODE" --version)"
