#!/bin/bash
# xl-ha scenarios, run inside the xenlab dom0 (by /xenlab/init) on real Xen 4.17.
#
# Every scenario runs in its own time-limited process (this script re-invoked with --one NAME)
# and ends with exactly one marker line, on the console (serial log) and in /xenlab/scenarios.txt:
#   XLHA-SCENARIO <name> <ok|fail|skipped> <json details>
# Scenarios share state through files in /run/xlha-lab (daemon pids, figures). Logs of every
# command go to /xenlab/out (read them after the run with debugfs -R 'rdump /xenlab/out DIR').
#
# Kernel command line knobs: xenlab.remus_secs=N (seconds each protection is measured, default 20),
# xenlab.budget=N (dom0 uptime by which all scenarios must have ended, default 720),
# xenlab.scenarios=a+b (run only these; the others are reported as skipped). Lists are joined
# with '+': QEMU's -initrd splits its argument at commas.
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SELF=$(readlink -f "$0")
OUT=/xenlab/out; RES=/xenlab/scenarios.txt; ST=/run/xlha-lab
CON=/var/log/xen/console; LOG=$CON/guest-domu1.log
CFG=/xenlab/domu1-pv.cfg
mkdir -p "$OUT" "$ST" /run/xl-ha /var/lib/xl-ha/p /var/lib/xl-ha/b
arg() { sed -n "s/.*xenlab\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
REMUS_SECS=$(arg remus_secs); REMUS_SECS=${REMUS_SECS:-20}
BUDGET=$(arg budget); BUDGET=${BUDGET:-720}
ONLY=$(arg scenarios)
# extra options for `xl-ha remus` (xenlab.xlha_opts=--heartbeat-ms=500+--failover-timeout-ms=5000)
XLHA_OPTS=$(arg xlha_opts | tr '+' ' ')
# environment of the xl-ha daemons (xenlab.daemon_env=NAME=VALUE+NAME=VALUE), for experiments
DAEMON_ENV=$(arg daemon_env | tr '+' ' ')
# xenlab.daemon_prof=1: V8 CPU profiles of both daemons (written when they stop) into $OUT/prof
PROF=$(arg daemon_prof)
# xenlab.daemon_strace=1: after xl-ha's measured window, both daemons' system calls for 10 s
# (strace -c -f, if the rootfs has strace) into $OUT/strace-{p,b}.txt (slows them while it runs)
STRACE=$(arg daemon_strace)
# xenlab.daemon_perf=1: after xl-ha's measured window, a CPU profile of both daemons for 10 s (perf
# record -e cpu-clock, if the rootfs has perf; start them with NODE_OPTIONS=--perf-basic-prof in
# xenlab.daemon_env for JS names) into $OUT/perf/, with what perf report needs on the host
PERF=$(arg daemon_perf)
# (node refuses --cpu-prof in NODE_OPTIONS: the daemons then start through node itself)
DAEMON_CWD=/; DAEMON_CMD=xl-ha
# xenlab.daemon_node_flags=--flag+--flag: run the daemons as node FLAGS .../xl-ha.cjs (V8 experiments)
NODE_FLAGS=$(arg daemon_node_flags | tr '+' ' ')
[ -n "$NODE_FLAGS" ] && DAEMON_CMD="node $NODE_FLAGS /opt/xl-ha/dist/src/cli/xl-ha.cjs"
[ "$PROF" = 1 ] && DAEMON_CMD="node --cpu-prof --cpu-prof-interval 10000 /opt/xl-ha/dist/src/cli/xl-ha.cjs" && DAEMON_CWD=$OUT/prof && mkdir -p "$DAEMON_CWD"
PORT=7720
PSOCK=/run/xl-ha/p.sock; BSOCK=/run/xl-ha/b.sock
# The two daemons share this dom0, so each has its own host name and keys directory (on two
# real hosts both are the defaults). They are paired as an admin pairs two hosts: xl-ha keygen
# on one, xl-ha pair on the other with the file it wrote.
PKEYS=/etc/xen/xl-ha/peers-p; BKEYS=/etc/xen/xl-ha/peers-b
pair_hosts() {
  [ -f "$PKEYS/lab-b.key" ] && [ -f "$BKEYS/lab-p.key" ] && return 0
  xl-ha --keys "$PKEYS" keygen --force --host-name lab-p --address "127.0.0.1:$PORT" lab-b > "$OUT/keygen.out" 2>&1 &&
    xl-ha --keys "$BKEYS" pair --force --host-name lab-b lab-p "$PKEYS/lab-b.key" > "$OUT/pair.out" 2>&1 ||
    { echo "pairing the lab's hosts failed: $(tail -n 3 "$OUT/keygen.out" "$OUT/pair.out" 2>/dev/null | tr '\n' ' ')"; return 1; }
}

# ---------------------------------------------------------------- helpers
up()   { cut -d' ' -f1 /proc/uptime; }
dt()   { awk -v a="$1" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}'; }
say()  { echo "[$(up)] $*" >&2; }
# JSON string literal of $1 (control characters dropped, at most 1500 characters, the end kept)
jstr() {
  local s=$1
  [ ${#s} -le 1500 ] || s="...${s: -1500}"
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/ }; s=${s//$'\r'/}; s=${s//$'\n'/\\n}
  s=$(printf '%s' "$s" | tr -d '\000-\037')
  printf '"%s"' "$s"
}
# JSON number, or null when $1 is not one
jnum() { if [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then printf '%s' "$1"; else printf null; fi; }
jbool() { if [ "$1" = 1 ] || [ "$1" = true ]; then printf true; else printf false; fi; }
# emit <name> <ok|fail|skipped> <reason or ""> [extra json members, starting with a comma]
emit() {
  local body
  if [ -n "$3" ]; then body="{\"reason\":$(jstr "$3")$4}"; else body="{${4#,}}"; fi
  local line="XLHA-SCENARIO $1 $2 $body"
  echo "$line"; echo "$line" >> "$RES"; sync
}
# last lines of a file, for failure reasons
tailf() { tail -n "${2:-12}" "$1" 2>/dev/null | cut -c1-300; }
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
ticks() { cat "$CON"/guest-*.log 2>/dev/null | grep -c 'domU tick'; }
# tick gaps in console log $1 between line numbers $2 (exclusive) and $3 (inclusive):
# "<count> <mean ms> <max ms>" of the gaps between consecutive 'domU tick ... up=<uptime>' lines
gaps() {
  awk -v a="$2" -v b="$3" '
    NR > a && NR <= b && /domU tick/ && match($0, /up=[0-9.]+/) {
      u = substr($0, RSTART + 3, RLENGTH - 3) + 0
      if (have && u > prev && u - prev < 600) { g = (u - prev) * 1000; n++; sum += g; if (g > max) max = g }
      prev = u; have = 1
    }
    END { if (n) printf "%d %.0f %.0f\n", n, sum / n, max; else print "0 - -" }' "$1" 2>/dev/null
}
domu_state() { xl list "${1:-domu1}" 2>/dev/null | awk 'NR==2{print $5}'; }
is_running() { local s; s=$(domu_state "$1"); [ -n "$s" ] && [[ $s =~ [rb] ]] && ! [[ $s =~ [psc] ]]; }
# kill every domU and leftover xl migrate-receive; then create domu1 afresh and wait for its
# DOMU-UP line (returns 1 with the reason on stdout on failure)
fresh_domu() {
  local d l0 s cfg=${1:-$CFG}
  pkill -9 -f 'xl.*migrate-receive' 2>/dev/null
  for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
  l0=$(lines "$LOG"); s=$(up)
  if ! timeout 120 xl create "$cfg" > "$OUT/create.log" 2>&1; then echo "xl create failed: $(tailf "$OUT/create.log" 5)"; return 1; fi
  for _ in $(seq 1 180); do
    tail -n +"$((l0 + 1))" "$LOG" 2>/dev/null | grep -q DOMU-UP && { say "domu1 up after $(dt "$s") s"; return 0; }
    sleep 1
  done
  echo "domu1 printed no DOMU-UP within 180 s: $(tailf "$LOG" 3)"; return 1
}
ensure_domu() { is_running domu1 && return 0; fresh_domu; }
# await_takeover <primary domid>: up to 90 s for the primary's death to be taken over: the
# backup's replica says active and a domain other than the primary runs. Sets the caller's
# bstate, found (that domain's id) and name (bash's dynamic scope: the caller declares them local).
await_takeover() {
  local pri=$1 t0; t0=$(up)
  for _ in $(seq 1 90); do
    bstate=$(raw_status "$BSOCK" | node /xenlab/jget.cjs result.replicas.0.state 2>/dev/null)
    found=""
    while read -r nm id _ _ stt _; do
      [ "$id" = "$pri" ] && continue
      if [[ $stt =~ [rb] ]] && ! [[ $stt =~ [psc] ]]; then found=$id; name=$nm; break; fi
    done < <(xl list 2>/dev/null | awk 'NR>2')
    [ -n "$found" ] && [ "$bstate" = active ] && break
    local el; el=$(dt "$t0"); [ "${el%.*}" -ge 90 ] && break
    sleep 1
  done
}
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# The primary daemon arms Xen's watchdog for dom0 while it protects (30 s by default). The lab's
# two hosts share this dom0, so the failover scenario's "dead primary host" (a kill -9 of its
# daemon) would reset the backup too: the primary daemon runs with --watchdog 0 until the
# watchdog scenario, the last, starts it with the default and hangs it.
P_WATCHDOG="--watchdog 0"
# start_daemon <p|b>: the primary daemon or the backup receiver, in their own session so a
# scenario's time limit does not kill them; returns 1 with the reason on stdout
start_daemon() {
  local who=$1 sock pid
  local dlog=$OUT/daemon-$who.log
  if [ "$who" = p ]; then sock=$PSOCK; else sock=$BSOCK; fi
  # already running (the shim scenario starts the primary daemon, remus reuses it)
  pid_alive "$(cat "$ST/$who.pid" 2>/dev/null)" && [ -S "$sock" ] && return 0
  rm -f "$sock"
  # one log per start, so a failure reason shows only this attempt
  [ -f "$dlog" ] && mv "$dlog" "$OUT/daemon-$who.$(date +%s%N).log"
  pair_hosts || return 1
  if [ "$who" = p ]; then
    # shellcheck disable=SC2086
    (cd "$DAEMON_CWD" && exec setsid env $DAEMON_ENV $DAEMON_CMD --backend xen --control "$sock" --keys "$PKEYS" daemon --host-name lab-p --state-dir /var/lib/xl-ha/p $P_WATCHDOG > "$dlog" 2>&1 < /dev/null) &
  else
    # shellcheck disable=SC2086
    (cd "$DAEMON_CWD" && exec setsid env $DAEMON_ENV $DAEMON_CMD --backend xen --control "$sock" --keys "$BKEYS" receive -l "127.0.0.1:$PORT" --host-name lab-b --state-dir /var/lib/xl-ha/b > "$dlog" 2>&1 < /dev/null) &
  fi
  pid=$!; echo "$pid" > "$ST/$who.pid"
  local s; s=$(up)
  for _ in $(seq 1 90); do
    [ -S "$sock" ] && { say "daemon $who (pid $pid) up after $(dt "$s") s"; return 0; }
    if ! pid_alive "$pid"; then
      wait "$pid" 2>/dev/null; local rc=$?
      echo "xl-ha daemon ($who, --backend xen) exited with status $rc before opening $sock: $(tailf "$dlog")"; return 1
    fi
    sleep 1
  done
  echo "xl-ha daemon ($who, --backend xen) did not open $sock within 90 s: $(tailf "$dlog")"; return 1
}
stop_daemon() {
  local pid; pid=$(cat "$ST/$1.pid" 2>/dev/null)
  pid_alive "$pid" || return 0
  local wait=15; [ "$PROF" = 1 ] && wait=90  # the profile is written on the way out
  kill -TERM "$pid"; for _ in $(seq 1 $wait); do pid_alive "$pid" || return 0; sleep 1; done
  kill -9 "$pid" 2>/dev/null
}
xlha() { timeout "${TMO:-60}" xl-ha --backend xen "$@"; }
# the daemon's status, one JSON line straight from its control socket: no node process, so it
# costs the measured guest nothing (an `xl-ha status` takes seconds of CPU under TCG)
raw_status() { printf '{"cmd":"status"}\n' | timeout 10 nc -q 2 -U "$1" 2>/dev/null | head -n 1; }
committed_of() { sed -n 's/.*"committed":\([0-9]*\).*/\1/p' <<< "$1" | head -n 1; }
# CPU accounting of a measured window (where the emulated CPUs go, per checkpoint):
# cpu_snap FILE records, per process, "pid comm utime+stime" (clock ticks) and, per domain,
# "dom <name> <cpu seconds>" from xl list; cpu_json A B N prints, in ms per checkpoint over N
# checkpoints, {"domains":{...},"dom0Processes":{comm: ms},"dom0ProcessesKernel":{comm: ms in the
# kernel},"minorFaults":{comm: n},"readWriteSyscalls":{comm: n},"contextSwitches":{comm: n},
# "daemonThreads":{"p|b:thread": [ms, ms in the kernel]}} (the xl-ha daemons' threads: main, the
# shim's xlha-save/xlha-restore, and the rest under node's name: libuv workers, V8's) (page
# faults on fresh memory are costly in a PV dom0 under emulation; processes above 1% of the CPU;
# a kworker's name changes with its workqueue, so processes are matched by pid, named before any '-')
cpu_snap() {
  {
    cat /proc/[0-9]*/stat 2>/dev/null | awk '{
      match($0, /\(.*\)/); c = substr($0, RSTART + 1, RLENGTH - 2); gsub(/[^A-Za-z0-9_.-]/, "_", c)
      split(substr($0, RSTART + RLENGTH + 1), a, " "); print "p", $1, c, a[12] + a[13], a[8], a[13] }'
    xl list 2>/dev/null | awk 'NR > 1 { print "dom", $1, $NF }'
    # the toolstack's processes: read/write-family system calls (/proc/PID/io) and context
    # switches of all their threads (each is dear in a PV dom0 under emulation)
    local d c n k v sc cs
    for d in /proc/[0-9]*; do
      { read -r c < "$d/comm"; } 2>/dev/null || continue
      case "$c" in node|xl|libxl-save-hel*|xenstored) ;; *) continue ;; esac
      sc=0
      while read -r k v; do case "$k" in syscr:|syscw:) sc=$((sc + v)) ;; esac; done < "$d/io" 2>/dev/null
      # one cat and one awk for all threads: a bash loop over a daemon's 70 threads cost seconds of
      # dom0 CPU under TCG, inside the measured window
      cs=$(cat "$d"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }')
      echo "s ${d#/proc/} ${c//[^A-Za-z0-9_.-]/_} $sc $cs"
    done
    # the daemons' threads (main, libuv workers: koffi's calls and the save thread, V8's), by role
    local who pid t
    for who in p b; do
      pid=$(cat "$ST/$who.pid" 2>/dev/null); [ -n "$pid" ] && [ -d "/proc/$pid/task" ] || continue
      cat /proc/"$pid"/task/[0-9]*/stat 2>/dev/null | awk -v who="$who" -v pid="$pid" '{ print "t", who, $1, ($1 == pid ? "main" : "other"), $0 }'
    done
  } > "$1"
}
cpu_json() {
  local hz; hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  awk -v hz="$hz" -v n="$3" '
    function thr(l,   a) { match(l, /\(.*\)/); split(substr(l, RSTART + RLENGTH + 1), a, " "); return (a[12] + a[13]) " " a[13] }
    function thrname(l,   c) { match(l, /\(.*\)/); c = substr(l, RSTART + 1, RLENGTH - 2); gsub(/[^A-Za-z0-9_.-]/, "_", c); sub(/_*[0-9]+$/, "", c); return c }
    FNR == NR && $1 == "t" { tb[$3] = thr($0); next }
    $1 == "t" { split(thr($0), v, " "); split(($3 in tb) ? tb[$3] : "0 0", w, " "); k = $2 ":" ($4 == "main" ? "main" : thrname($0))
      d = v[1] - w[1]; if (d > 0) thcpu[k] += d; d = v[2] - w[2]; if (d > 0) thsys[k] += d; next }
    FNR == NR { if ($1 == "p") { before[$2] = $4; fbefore[$2] = $5; sbefore[$2] = $6 } else if ($1 == "s") { scb[$2] = $4; csb[$2] = $5 } else dom0[$2] = $3; next }
    $1 == "s" { c = $3; sub(/-.*/, "", c); r = $4 - ($2 in scb ? scb[$2] : 0); x = $5 - ($2 in csb ? csb[$2] : 0)
      if (r > 0) rw[c] += r; if (x > 0) cx[c] += x; next }  # (a thread that ended takes its count along)
    $1 == "p" {
      c = $3; sub(/-.*/, "", c); d = $4 - ($2 in before ? before[$2] : 0); if (d > 0) { by[c] += d; tot += d }
      f = $5 - ($2 in fbefore ? fbefore[$2] : 0); if (f > 0) flt[c] += f
      k = $6 - ($2 in sbefore ? sbefore[$2] : 0); if (k > 0) sys[c] += k; next
    }
    $1 == "dom" && ($2 in dom0) { dd[$2] = $3 - dom0[$2] }
    END {
      if (n < 1) n = 1
      printf "{\"domains\":{"; sep = ""
      for (k in dd) { printf "%s\"%s\":%.0f", sep, k, dd[k] * 1000 / n; sep = "," }
      printf "},\"dom0Processes\":{"; sep = ""
      for (k in by) if (by[k] * 100 >= tot) { printf "%s\"%s\":%.1f", sep, k, by[k] * 1000 / hz / n; sep = "," }
      printf "},\"dom0ProcessesKernel\":{"; sep = ""
      for (k in by) if (by[k] * 100 >= tot) { printf "%s\"%s\":%.1f", sep, k, sys[k] * 1000 / hz / n; sep = "," }
      printf "},\"minorFaults\":{"; sep = ""
      for (k in flt) if (flt[k] >= n) { printf "%s\"%s\":%.0f", sep, k, flt[k] / n; sep = "," }
      printf "},\"readWriteSyscalls\":{"; sep = ""
      for (k in rw) { printf "%s\"%s\":%.0f", sep, k, rw[k] / n; sep = "," }
      printf "},\"contextSwitches\":{"; sep = ""
      for (k in cx) { printf "%s\"%s\":%.0f", sep, k, cx[k] / n; sep = "," }
      printf "},\"daemonThreads\":{"; sep = ""
      for (k in thcpu) if (thcpu[k] * 1000 / hz / n >= 1) { printf "%s\"%s\":[%.1f,%.1f]", sep, k, thcpu[k] * 1000 / hz / n, thsys[k] * 1000 / hz / n; sep = "," }
      printf "}}"
    }' "$1" "$2"
}
# kernel messages about crashed processes (dom0 userspace has segfaulted at random under TCG)
# how fast the machine is right now, in ms for a fixed awk loop (boots, and moments within a boot,
# differ by up to 2x under TCG): each measured run takes it just before it starts, so a ratio
# between two runs can be read against the speed of the lab at each
yardstick() {
  local a b; a=$(date +%s%N)
  awk 'BEGIN { for (i = 0; i < 200000; i++) s += i % 7; exit s < 0 }'
  b=$(date +%s%N); echo $(( (b - a) / 1000000 ))
}
crashes() { dmesg 2>/dev/null | grep -iE 'segfault|traps:|general protection|invalid opcode' | tail -n 3; }

# ---------------------------------------------------------------- scenarios
# (d) baseline: stock xl remus to localhost, figures while protected, then a clean stop
sc_stock-remus() { stock_remus stock-remus; }
# stock again at the end of the boot: boots differ a lot (stock 1.70–3.42 checkpoints/s in a
# day's boots), and stock before and after xl-ha in one boot bounds how much the boot drifted
sc_stock-remus-after() {
  stop_daemon p; stop_daemon b
  stock_remus stock-remus-after
}
# stock over TCP: the same path as xl-ha's replication (a relay at each end, TCP between them)
# rather than fakessh's single pipe, which no two hosts can share; needs socat in the rootfs
sc_stock-remus-tcp() {
  command -v socat > /dev/null || { emit stock-remus-tcp fail "no socat in the lab's rootfs (setup.sh adds it)"; return; }
  stop_daemon p; stop_daemon b
  stock_remus stock-remus-tcp /xenlab/fakessh-tcp
}
stock_remus() {
  local n=$1 ssh=${2:-/xenlab/fakessh} why rlog=$OUT/$1.log
  why=$(fresh_domu) || { emit $n fail "$why"; return; }
  local ys; ys=$(yardstick)
  sleep 5  # a few unprotected ticks, for comparison
  local lup; lup=$(grep -n DOMU-UP "$LOG" | tail -1 | cut -d: -f1)
  local l0; l0=$(lines "$LOG"); read -r bn bmean bmax <<< "$(gaps "$LOG" "$lup" "$l0")"
  local s; s=$(up)
  say "+ xl -vvv remus -F -n -d -i 100 -s $ssh domu1 localhost (for ${REMUS_SECS}s after the first checkpoint)"
  xl -vvv remus -F -n -d -i 100 -s "$ssh" domu1 localhost > "$rlog" 2>&1 &
  local rpid=$! t1="" c1 l1 c
  for _ in $(seq 1 150); do
    c=$(grep -c 'Checkpointed save' "$rlog")
    if [ "$c" -ge 1 ]; then t1=$(up); c1=$c; l1=$(lines "$LOG"); cpu_snap "$ST/$n-cpu.1"; break; fi
    pid_alive $rpid || break
    sleep 1
  done
  if [ -z "$t1" ]; then
    emit $n fail "no 'Checkpointed save' from xl remus within 150 s (sender alive: $(pid_alive $rpid && echo yes || echo no)): $(grep -v -i debug "$rlog" | tailf /dev/stdin)"
    kill -9 $rpid 2>/dev/null; return
  fi
  local first_after; first_after=$(dt "$s")
  for _ in $(seq 1 "$REMUS_SECS"); do pid_alive $rpid || break; sleep 1; done
  local t2 c2 l2 alive_at_end=0; t2=$(up); c2=$(grep -c 'Checkpointed save' "$rlog"); l2=$(lines "$LOG"); cpu_snap "$ST/$n-cpu.2"
  pid_alive $rpid && alive_at_end=1
  local cps secs; secs=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')
  cps=$(awk -v c="$((c2 - c1))" -v s="$secs" 'BEGIN{if (s > 0) printf "%.2f", c/s; else print "-"}')
  local gn gmean gmax; read -r gn gmean gmax <<< "$(gaps "$LOG" "$l1" "$l2")"
  say "$n: $c2 checkpoints ($((c2 - c1)) in ${secs}s after the first: $cps/s), tick gaps n=$gn mean=${gmean}ms max=${gmax}ms"
  # clean stop (xen-lab.md): destroy the primary first, then kill -9 the sender
  local pri; pri=$(cat "$ST/primary.domid" 2>/dev/null); [ -n "$pri" ] || pri=$(xl domid domu1 2>/dev/null)
  timeout 60 xl destroy domu1 >> "$OUT/$n-stop.log" 2>&1; local drc=$?
  sleep 3; kill -9 $rpid 2>/dev/null; wait $rpid 2>/dev/null
  local fo=0; for _ in $(seq 1 20); do grep -q 'Remus Failover' "$rlog" && { fo=1; break; }; sleep 1; done
  xl list > "$OUT/$n-after-stop.txt" 2>&1
  # pages per checkpoint: libxc's 'Checkpointed save: N/N' progress lines, median
  local spages; spages=$(sed -n 's/.*Checkpointed save: \([0-9]*\)\/.*/\1/p' "$rlog" | sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}')
  local extra=",\"pagesPerCheckpointP50\":$(jnum "$spages"),\"checkpoints\":$(jnum "$c2"),\"firstCheckpointAfterSecs\":$(jnum "$first_after"),\"measuredSecs\":$(jnum "$secs"),\"checkpointsPerSec\":$(jnum "$cps")"
  extra+=",\"tickGaps\":$(jnum "$gn"),\"tickGapMsMean\":$(jnum "$gmean"),\"tickGapMsMax\":$(jnum "$gmax")"
  extra+=",\"yardstickMs\":$(jnum "$ys"),\"unprotectedTickGapMsMean\":$(jnum "$bmean"),\"unprotectedTickGapMsMax\":$(jnum "$bmax")"
  extra+=",\"cpuMsPerCheckpoint\":$(cpu_json "$ST/$n-cpu.1" "$ST/$n-cpu.2" "$((c2 - c1))")"
  extra+=",\"senderAliveAtEnd\":$(jbool $alive_at_end),\"primaryDomid\":$(jnum "$pri"),\"destroyRc\":$drc,\"receiverFailover\":$(jbool $fo)"
  if [ "$((c2 - c1))" -ge 1 ] && [ "$gn" -ge 2 ]; then emit $n ok "" "$extra"
  else emit $n fail "too little to measure: $((c2 - c1)) checkpoints and $gn tick gaps after the first checkpoint; sender: $(grep -v -i debug "$rlog" | tailf /dev/stdin 6)" "$extra"; fi
  # a freshly created domu1 for the next scenario (the failed-over replica is left behind otherwise)
  why=$(fresh_domu) || say "recreating domu1 failed: $why"
}

# the Xen backend and the C shim: xl-ha lists Domain-0 and the domU
sc_shim() {
  local n=shim why
  why=$(ensure_domu) || { emit $n fail "$why"; return; }
  [ -f /opt/xl-ha/libxl-shim/libxlha.so ] && local shim=1 || local shim=0
  why=$(start_daemon p) || { emit $n fail "$why" ",\"shimStaged\":$(jbool $shim)"; return; }
  local out rc retried=""
  out=$(TMO=90 xlha --control "$PSOCK" list 2> "$OUT/shim-list.err"); rc=$?
  if [ $rc -ge 128 ] && [ $rc -ne 137 ]; then
    # killed by a signal: say so, with the kernel's words, and try once more (a crash that repeats fails)
    retried="exit $rc (signal $((rc - 128))); stderr: $(tailf "$OUT/shim-list.err" 4); kernel: $(crashes)"
    say "xl-ha list died: $retried; retrying once"
    out=$(TMO=90 xlha --control "$PSOCK" list 2> "$OUT/shim-list.err"); rc=$?
  fi
  echo "$out" > "$OUT/shim-list.out"
  local ex0=",\"shimStaged\":$(jbool $shim)"; [ -z "$retried" ] || ex0+=",\"firstAttempt\":$(jstr "$retried")"
  if [ $rc -ne 0 ]; then
    local why="xl-ha --backend xen list exited $rc: $(tailf "$OUT/shim-list.err")"
    [ $rc -lt 128 ] || why+=" (killed by signal $((rc - 128)); kernel: $(crashes))"
    emit $n fail "$why" "$ex0"; return
  fi
  local extra="$ex0,\"list\":$(jstr "$out"),\"xlList\":$(jstr "$(xl list 2>&1)")"
  if grep -q 'Domain-0' <<< "$out" && grep -q 'domu1' <<< "$out"; then emit $n ok "" "$extra"
  else emit $n fail "xl-ha --backend xen list does not show both Domain-0 and domu1" "$extra"; fi
}

# (a) xl-ha remus to a receiver in the same dom0; (d) its figures go to $ST/figures for xlha-remus-figures
# Measures a running xl-ha protection of domu1 (started at $s; the client's note in $client_note):
# waits for its first commit, then REMUS_SECS with nothing else running. Writes the figures JSON
# fragment to $1 and leaves c1 c2 gn perr state samples stf extra for the caller (bash's dynamic
# scope: the caller declares them local).
xlha_measure() {
  local figs=$1
  stf=$OUT/status-p.jsonl; : >> "$stf"
  local js pst
  # the measurement starts at the first committed checkpoint (as for stock xl remus)
  for _ in $(seq 1 60); do
    js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1); echo "$js" >> "$stf"
    mapfile -t f < <(node /xenlab/jget.cjs protections.0.committed protections.0.state <<< "$js")
    c1=${f[0]}; pst=${f[1]}
    [[ ${c1:-x} =~ ^[0-9]+$ ]] && [ "$c1" -ge 1 ] && break
    [ -n "$pst" ] && [ "$pst" != error ] && [ "$pst" != stopped ] || break
    awk -v a="$(up)" -v b="$s" 'BEGIN{exit !(a - b < 150)}' || break
    sleep 3
  done
  [ -z "$client_note" ] || first_after=$(dt "$s") # the client gave up: the poll above saw the first commit
  # Nothing else runs while measuring: an `xl-ha status` starts a node process, which costs
  # seconds of CPU under TCG and would tax the protected guest (stock xl remus is measured from
  # its log). The window's counts come from the control socket (raw_status) at its two ends.
  local t1 l1 r; t1=$(up); r=$(raw_status "$PSOCK"); l1=$(lines "$LOG"); cpu_snap "$ST/xlha-cpu.1"
  [[ $(committed_of "$r") =~ ^[0-9]+$ ]] && c1=$(committed_of "$r")
  samples="${c1:-?}"
  sleep "$REMUS_SECS"
  local t2 l2; l2=$(lines "$LOG"); t2=$(up); r=$(raw_status "$PSOCK"); cpu_snap "$ST/xlha-cpu.2"
  local c2raw; c2raw=$(committed_of "$r")
  js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1); echo "$js" >> "$stf"
  samples+=" ${c2raw:-?}"
  local f; mapfile -t f < <(node /xenlab/jget.cjs protections.0.committed protections.0.state protections.0.checkpointsPerSec \
    protections.0.pagesPerCheckpointP50 protections.0.pauseMsP50 protections.0.pauseMsP99 protections.0.error backend protections.0.domid \
    protections.0.backendStepsMsP50 protections.0.ackMsP50 daemon.maxRssMiB protections.0.bytesPerCheckpointP50 <<< "$js")
  c2=${c2raw:-${f[0]}}; state=${f[1]}; perr=${f[6]}; local dcps=${f[2]} pages=${f[3]} p50=${f[4]} p99=${f[5]} backend=${f[7]}
  echo "${f[8]}" > "$ST/primary.domid"
  TMO=30 xlha --control "$BSOCK" status --json > "$OUT/status-b.json" 2>&1
  local bstate brss; bstate=$(node /xenlab/jget.cjs replicas.0.state < "$OUT/status-b.json")
  brss=$(node /xenlab/jget.cjs daemon.maxRssMiB < "$OUT/status-b.json")
  local secs cps; secs=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')
  cps=$(awk -v c="$(( ${c2:-0} - ${c1:-0} ))" -v s="$secs" 'BEGIN{if (s > 0) printf "%.2f", c/s; else print "-"}')
  local gmean gmax; read -r gn gmean gmax <<< "$(gaps "$LOG" "$l1" "$l2")"
  say "xl-ha remus: committed $samples; $cps/s; tick gaps n=$gn mean=${gmean}ms max=${gmax}ms"
  if [ "$STRACE" = 1 ]; then
    if command -v strace > /dev/null; then
      local sa sb sp=() who
      sa=$(committed_of "$(raw_status "$PSOCK")")
      for who in p b; do strace -c -f -qq -o "$OUT/strace-$who.txt" -p "$(cat "$ST/$who.pid")" & sp+=($!); done
      sleep 10; kill -INT "${sp[@]}" 2>/dev/null; wait "${sp[@]}" 2>/dev/null
      sb=$(committed_of "$(raw_status "$PSOCK")")
      say "strace of both daemons: checkpoints $sa -> $sb (out/strace-p.txt, out/strace-b.txt)"
    else say "xenlab.daemon_strace=1 but the rootfs has no strace"; fi
  fi
  if [ "$PERF" = 1 ]; then
    if command -v perf > /dev/null; then
      local pa pb pp=() pw
      mkdir -p "$OUT/perf"
      pa=$(committed_of "$(raw_status "$PSOCK")")
      for pw in p b; do perf record -e cpu-clock -F 499 -g -o "$OUT/perf/$pw.data" -p "$(cat "$ST/$pw.pid")" -- sleep 10 > "$OUT/perf/record-$pw.err" 2>&1 & pp+=($!); done
      wait "${pp[@]}" 2>/dev/null
      pb=$(committed_of "$(raw_status "$PSOCK")")
      # reported on the host (the lab's CPU is too slow for perf report): the JIT maps and
      # kernel symbols go with the data; binaries are in the rootfs (perf report --symfs)
      cp /tmp/perf-*.map "$OUT/perf/" 2>/dev/null; cat /proc/kallsyms > "$OUT/perf/kallsyms"
      say "perf of both daemons: checkpoints $pa -> $pb (out/perf/{p,b}.data)"
    else say "xenlab.daemon_perf=1 but the rootfs has no perf"; fi
  fi
  extra=",\"clientFailure\":$(jstr "$client_note"),\"committedSamples\":$(jstr "$samples"),\"committed\":$(jnum "$c2"),\"state\":$(jstr "$state"),\"backupState\":$(jstr "$bstate"),\"backend\":$(jstr "$backend")"
  extra+=",\"tickGaps\":$(jnum "$gn"),\"primaryError\":$(jstr "$perr")"
  printf '%s' ",\"firstCheckpointAfterSecs\":$(jnum "$first_after"),\"committed\":$(jnum "$c2"),\"measuredSecs\":$(jnum "$secs"),\"checkpointsPerSec\":$(jnum "$cps"),\"daemonCheckpointsPerSec\":$(jnum "$dcps"),\"pagesPerCheckpointP50\":$(jnum "$pages"),\"pauseMsP50\":$(jnum "$p50"),\"pauseMsP99\":$(jnum "$p99"),\"tickGaps\":$(jnum "$gn"),\"tickGapMsMean\":$(jnum "$gmean"),\"tickGapMsMax\":$(jnum "$gmax"),\"yardstickMs\":$(jnum "${ys:-}"),\"daemonPeakRssMiB\":{\"primary\":$(jnum "${f[11]}"),\"backup\":$(jnum "$brss")},\"ackMsP50\":$(jnum "${f[10]}"),\"bytesPerCheckpointP50\":$(jnum "${f[12]}"),\"backendStepsMsP50\":${f[9]:-null},\"cpuMsPerCheckpoint\":$(cpu_json "$ST/xlha-cpu.1" "$ST/xlha-cpu.2" "$(( ${c2:-0} - ${c1:-0} ))")" > "$figs"
}

sc_remus() {
  local n=remus why
  rm -f "$ST/remus.ok" "$ST/figures"
  why=$(ensure_domu) || { emit $n fail "$why"; echo "$why" > "$ST/remus.why"; return; }
  # before the daemons start (a node process starting up taxes the machine for seconds)
  local ys; ys=$(yardstick)
  why=$(start_daemon p) || { emit $n fail "$why"; echo "$why" > "$ST/remus.why"; return; }
  why=$(start_daemon b) || { emit $n fail "$why"; echo "$why" > "$ST/remus.why"; return; }
  local s rc f; s=$(up)
  # -d as for the stock baseline (xl remus -F -n -d): no disk replication (the domU has no disk)
  say "+ xl-ha --backend xen --control $PSOCK remus -i 100 -F -n -d $XLHA_OPTS domu1 127.0.0.1:$PORT"
  # shellcheck disable=SC2086
  TMO=180 xlha --control "$PSOCK" remus -i 100 -F -n -d $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/xlha-remus.out" 2> "$OUT/xlha-remus.err"; rc=$?
  # `xl-ha remus` returns once the first checkpoint is committed (as stock's first 'Checkpointed
  # save' line): that is the time to protection
  local first_after; first_after=$(dt "$s")
  local client_note=""
  if [ $rc -ne 0 ]; then
    # the client gave up (its control request times out after 60 s, while the first checkpoint
    # under TCG can take longer) or died of a signal: the protection may still be running in the
    # daemon, which is what this scenario checks; look there, and keep the client's failure as a note
    client_note="xl-ha remus client exited $rc$([ $rc -lt 128 ] || echo " (signal $((rc - 128)))"): $(tailf "$OUT/xlha-remus.err" 3)"
    say "$client_note; asking the daemon whether the protection runs"
    sleep 5
    TMO=30 xlha --control "$PSOCK" status --json > "$OUT/status-after-client-failure.json" 2>&1
    local pst; pst=$(node /xenlab/jget.cjs protections.0.state < "$OUT/status-after-client-failure.json")
    if [ -n "$pst" ] && [ "$pst" != error ] && [ "$pst" != stopped ]; then say "protection is $pst: going on"; rc=0
    else client_note+="; then the daemon's status showed protection state '${pst:-none}': $(head -c 300 "$OUT/status-after-client-failure.json")"; fi
  fi
  if [ $rc -ne 0 ]; then
    why="${client_note:-xl-ha remus exited $rc: $(tailf "$OUT/xlha-remus.err")}"
    [ $rc -lt 128 ] || why+=" (killed by signal $((rc - 128)); kernel: $(crashes))"
    # the daemons' own words (the client only relays the first error)
    why+="; primary daemon: $(tailf "$OUT/daemon-p.log" 4); backup daemon: $(tailf "$OUT/daemon-b.log" 4)"
    emit $n fail "$why"; echo "$why" > "$ST/remus.why"; return
  fi
  local stf c1 c2 gn perr state samples extra
  xlha_measure "$ST/figures"
  if [[ ${c1:-x} =~ ^[0-9]+$ && ${c2:-x} =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] && [ "$c2" -ge 2 ] && [ "$gn" -ge 2 ] && [ -z "$perr" ]; then
    touch "$ST/remus.ok"; emit $n ok "" "$extra"
  else
    why="committed checkpoints did not grow or the guest did not tick (committed samples: $samples; tick gaps: $gn; primary state: ${state:-?} ${perr}; last status: $(tail -1 "$stf" | cut -c1-400))"
    echo "$why" > "$ST/remus.why"; emit $n fail "$why" "$extra"
  fi
}

# xl-ha once more at the end of the boot, right after stock-remus-after: a boot speeds up as it
# goes (stock ran 2.95 checkpoints/s first and 4.02 last in one boot), so this and
# stock-remus-after are the pair measured under the same conditions
sc_xlha-remus-after() {
  local n=xlha-remus-after why
  why=$(ensure_domu) || { emit $n fail "$why"; return; }
  local ys; ys=$(yardstick)
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  why=$(start_daemon b) || { emit $n fail "$why"; return; }
  local s rc client_note="" first_after; s=$(up)
  say "+ xl-ha --backend xen --control $PSOCK remus -i 100 -F -n -d $XLHA_OPTS domu1 127.0.0.1:$PORT (again)"
  # shellcheck disable=SC2086
  TMO=180 xlha --control "$PSOCK" remus -i 100 -F -n -d $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/xlha-remus-after.out" 2> "$OUT/xlha-remus-after.err"; rc=$?
  first_after=$(dt "$s")
  if [ $rc -ne 0 ]; then
    emit $n fail "xl-ha remus exited $rc: $(tailf "$OUT/xlha-remus-after.err" 3); primary daemon: $(tailf "$OUT/daemon-p.log" 4); backup daemon: $(tailf "$OUT/daemon-b.log" 4)"; return
  fi
  local stf c1 c2 gn perr state samples extra
  xlha_measure "$ST/figures-after"
  TMO=90 xlha --control "$PSOCK" stop domu1 > "$OUT/xlha-remus-after-stop.log" 2>&1
  if [[ ${c1:-x} =~ ^[0-9]+$ && ${c2:-x} =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] && [ "$gn" -ge 2 ] && [ -z "$perr" ]; then
    emit $n ok "" "$(cat "$ST/figures-after")"
  else
    emit $n fail "committed checkpoints did not grow or the guest did not tick (committed samples: $samples; tick gaps: $gn; primary state: ${state:-?} ${perr})" "$(cat "$ST/figures-after")"
  fi
}

# (d) xl-ha side of the side-by-side figures, from the remus scenario's protection
sc_xlha-remus-figures() {
  local n=xlha-remus-figures
  if [ -f "$ST/remus.ok" ] && [ -s "$ST/figures" ]; then emit $n ok "" "$(cat "$ST/figures")"
  elif [ -s "$ST/figures" ]; then emit $n fail "the xl-ha protection measured did not work: $(cat "$ST/remus.why" 2>/dev/null)" "$(cat "$ST/figures")"
  else emit $n fail "no xl-ha remus protection to measure: $(cat "$ST/remus.why" 2>/dev/null || echo 'remus scenario did not run')"; fi
}

# (f) ha_transfer on real Xen: xl-ha remus with each transfer option in turn (full, fgbi,
# compress, fgbi,compress), measured as the remus scenario measures, back to back: run.ts puts
# them side by side (sideBySide.transfers, ratios to this scenario's full). Then the primary dies under the last of them: the
# backup must run the guest from the stream it rebuilt (fgbi's pages from its shadow, unpacked
# chunks) and handed to libxc, and the guest must tick.
sc_transfer() {
  local n=transfer why T tag all="" bad=""
  why=$(ensure_domu) || { emit $n fail "$why"; return; }
  local ys; ys=$(yardstick)
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  why=$(start_daemon b) || { emit $n fail "$why"; return; }
  local last=""
  # full first: the comparison each option is read against, measured minutes apart in the same
  # boot (a boot's speed drifts as it goes; the remus scenario's full ran near its start)
  for T in full fgbi compress fgbi,compress; do
    tag=${T/,/+}
    local s rc first_after client_note=""; s=$(up)
    say "+ xl-ha --backend xen --control $PSOCK remus -i 100 -F -n -d --transfer $T $XLHA_OPTS domu1 127.0.0.1:$PORT"
    # shellcheck disable=SC2086
    TMO=300 xlha --control "$PSOCK" remus -i 100 -F -n -d --transfer "$T" $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/transfer-$tag.out" 2>&1; rc=$?
    first_after=$(dt "$s")
    if [ $rc -ne 0 ]; then
      bad+="$T: xl-ha remus exited $rc: $(tailf "$OUT/transfer-$tag.out" 3 | tr '\n' ' '); primary daemon: $(tailf "$OUT/daemon-p.log" 3 | tr '\n' ' '); backup daemon: $(tailf "$OUT/daemon-b.log" 3 | tr '\n' ' '); "
      TMO=90 xlha --control "$PSOCK" stop domu1 > /dev/null 2>&1
      continue
    fi
    local stf c1 c2 gn perr state samples extra
    xlha_measure "$ST/figures-transfer-$tag"
    local tstatus; tstatus=$(node /xenlab/jget.cjs protections.0.transfer < <(tail -1 "$stf"))
    all+="${all:+,}\"$T\":{\"transfer\":$(jstr "$T")$(cat "$ST/figures-transfer-$tag"),\"transferStatus\":${tstatus:-null}}"
    if [[ ${c1:-x} =~ ^[0-9]+$ && ${c2:-x} =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] && [ "$gn" -ge 2 ] && [ -z "$perr" ]; then last=$T
    else bad+="$T: committed checkpoints did not grow or the guest did not tick (committed samples: $samples; tick gaps: $gn; primary state: ${state:-?} ${perr}); "; last=""; fi
    [ "$T" = fgbi,compress ] || TMO=90 xlha --control "$PSOCK" stop domu1 > "$OUT/transfer-$tag-stop.log" 2>&1
  done
  local fo=null
  if [ "$last" = fgbi,compress ]; then
    # the primary host dies under fgbi,compress, as in the failover scenario
    local pri; pri=$(cat "$ST/primary.domid" 2>/dev/null)
    say "+ kill -9 the primary daemon; xl destroy $pri (the primary domu1, protected with $last)"
    kill -9 "$(cat "$ST/p.pid")" 2>/dev/null
    timeout 60 xl destroy "$pri" > "$OUT/transfer-destroy.log" 2>&1
    local fs; fs=$(up); local found="" name="" bstate=""
    await_takeover "$pri"
    local took; took=$(dt "$fs")
    local a b; a=$(ticks); sleep 8; b=$(ticks)
    fo="{\"runningAfterSecs\":$(jnum "$took"),\"backupState\":$(jstr "$bstate"),\"backupDomid\":$(jnum "$found"),\"ticksIn8s\":$((b - a))}"
    if [ "$bstate" != active ] || [ -z "$found" ] || [ "$b" -le "$a" ]; then
      bad+="failover under fgbi,compress: replica ${bstate:-?}, domain ${found:-none}, ticks in 8 s $((b - a)); backup daemon: $(tailf "$OUT/daemon-b.log" 6 | tr '\n' ' '); "
    fi
  elif [ -z "$bad" ]; then bad="fgbi,compress did not run: no failover to check; "
  fi
  local extra=",\"transfers\":{$all},\"failover\":$fo"
  if [ -z "$bad" ]; then emit $n ok "" "$extra"; else emit $n fail "$bad" "$extra"; fi
}

# (h) what the link's TLS costs under TCG (docs/security.md): the remus scenario's measurement
# once more, both daemons started with XLHA_PLAINTEXT_LOOPBACK=1 (no TLS; loopback only), in the
# same boot. run.ts sets it beside the TLS run (xlha-remus-figures, and xlha-remus-after, which
# runs just before this). The daemons are stopped after, so later scenarios get TLS ones.
sc_tls-cost() {
  local n=tls-cost why
  why=$(ensure_domu) || { emit $n fail "$why"; return; }
  stop_daemon p; stop_daemon b
  local DAEMON_ENV="$DAEMON_ENV XLHA_PLAINTEXT_LOOPBACK=1"
  local ys; ys=$(yardstick)
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  why=$(start_daemon b) || { emit $n fail "$why"; return; }
  local s rc client_note="" first_after; s=$(up)
  say "+ XLHA_PLAINTEXT_LOOPBACK=1 daemons; xl-ha remus -i 100 -F -n -d $XLHA_OPTS domu1 127.0.0.1:$PORT"
  # shellcheck disable=SC2086
  TMO=300 xlha --control "$PSOCK" remus -i 100 -F -n -d $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/tls-cost.out" 2>&1; rc=$?
  first_after=$(dt "$s")
  if [ $rc -ne 0 ]; then
    emit $n fail "xl-ha remus without TLS exited $rc: $(tailf "$OUT/tls-cost.out" 3); primary daemon: $(tailf "$OUT/daemon-p.log" 4)"
    stop_daemon p; stop_daemon b; return
  fi
  local stf c1 c2 gn perr state samples extra
  xlha_measure "$ST/figures-plain"
  TMO=90 xlha --control "$PSOCK" stop domu1 > /dev/null 2>&1
  stop_daemon p; stop_daemon b
  # the backup's own word that its link ran without TLS
  local plain; plain=$(grep -c 'WITHOUT encryption' "$OUT/daemon-b.log" 2>/dev/null)
  if [ "${plain:-0}" -lt 1 ]; then emit $n fail "the backup daemon did not log that it ran without TLS: this measured TLS" "$(cat "$ST/figures-plain")"
  elif [[ ${c1:-x} =~ ^[0-9]+$ && ${c2:-x} =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] && [ "$gn" -ge 2 ] && [ -z "$perr" ]; then
    emit $n ok "" "$(cat "$ST/figures-plain"),\"plaintextLogLines\":$(jnum "$plain")"
  else
    emit $n fail "committed checkpoints did not grow or the guest did not tick without TLS (committed samples: $samples; tick gaps: $gn; primary state: ${state:-?} ${perr})" "$(cat "$ST/figures-plain")"
  fi
}

# (g) xl save, then xl migrate, of a protected domain: libxl runs its own save beside xl-ha's,
# and two saves of one domain would each miss pages the guest writes (they share its log-dirty
# bitmap). xl-ha finds libxl's save helper before its next checkpoint (foreign-save.ts) and
# ends that protection; the backup drops its replica. The defined ends, one of which must hold:
#  - the command succeeded: the protected domain is gone (saved, or moved to its new domid),
#    its protection is over (failed, naming the other save, or stopped), no replica is left;
#  - the command failed: the domain runs, and either it is still protected (committed grows) or
#    its protection ended naming the other save, with no replica left.
# A paused or wedged domain, a protection still claiming a domain another save holds, or a
# stray replica fails. The saved image is restored so the lab goes on.
xlsave_outcome() {
  # xlsave_outcome <label> <command rc> <protected domid>: prints the outcome's JSON fragment;
  # returns 1 when the end state is not one of the defined ones
  local what=$1 rc=$2 pd=$3 st c state perr bst nrep running=false ds
  sleep 8
  st=$(raw_status "$PSOCK"); c=$(committed_of "$st")
  state=$(node /xenlab/jget.cjs result.protections.0.state <<< "$st" 2>/dev/null)
  perr=$(node /xenlab/jget.cjs result.protections.0.error <<< "$st" 2>/dev/null)
  bst=$(raw_status "$BSOCK")
  nrep=$(node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const r=JSON.parse(s).result;console.log((r.replicas||[]).filter(x=>x.state!=="stopped").length)}catch{console.log("?")}})' <<< "$bst")
  ds=$(xl list 2>/dev/null | awk -v d="$pd" 'NR>1 && $2==d {print $5}')
  [ -n "$ds" ] && [[ $ds =~ [rb] ]] && ! [[ $ds =~ [psc] ]] && running=true
  printf '%s' "\"$what\":{\"rc\":$rc,\"protectedDomid\":$(jnum "$pd"),\"protectedDomainRunning\":$running,\"protectedDomainState\":$(jstr "$ds"),\"protection\":$(jstr "$state"),\"protectionError\":$(jstr "$perr"),\"committedBefore\":$(jnum "$CB"),\"committedAfter\":$(jnum "$c"),\"backupReplicas\":$(jnum "$nrep"),\"output\":$(jstr "$(tailf "$OUT/$what.log" 4)")}"
  local ended=false; [[ $perr == *"another save of domain"* ]] && [ "$nrep" = 0 ] && ended=true
  if [ "$rc" -eq 0 ]; then
    [ -z "$ds" ] && [ "$state" != protected ] && [ "$nrep" = 0 ] && return 0
  else
    [ "$running" = true ] || return 1
    [ "$state" = protected ] && [[ ${c:-x} =~ ^[0-9]+$ ]] && [ "$c" -gt "${CB:-0}" ] && return 0
    [ "$ended" = true ] && return 0
  fi
  return 1
}
sc_xl-save() {
  local n=xl-save why out="" bad="" rc pd frag
  why=$(ensure_domu) || { emit $n fail "$why"; return; }
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  why=$(start_daemon b) || { emit $n fail "$why"; return; }
  protect_for_save() {
    TMO=300 xlha --control "$PSOCK" remus -i 100 -F -n -d domu1 "127.0.0.1:$PORT" > "$OUT/xl-save-remus.out" 2>&1 || return 1
    sleep 3; CB=$(committed_of "$(raw_status "$PSOCK")"); pd=$(xl domid domu1 2>/dev/null)
  }
  protect_for_save || { emit $n fail "xl-ha remus: $(tailf "$OUT/xl-save-remus.out" 3)"; return; }
  say "+ xl save domu1 /var/tmp/domu1.save (domid $pd, protected, committed $CB)"
  rm -f /var/tmp/domu1.save
  timeout 180 xl save domu1 /var/tmp/domu1.save > "$OUT/xl-save.log" 2>&1; rc=$?
  frag=$(xlsave_outcome xl-save $rc "$pd") || bad+="xl save (exit $rc) ended in no defined state; "
  out+=$frag
  if ! is_running domu1; then
    if [ -s /var/tmp/domu1.save ]; then timeout 180 xl restore /var/tmp/domu1.save > "$OUT/xl-restore.log" 2>&1 || bad+="xl restore of the saved image failed: $(tailf "$OUT/xl-restore.log" 2); "; fi
    is_running domu1 || { why=$(fresh_domu) || { emit $n fail "${bad}no domu1 after xl save: $why" ",$out"; return; }; }
  fi
  TMO=90 xlha --control "$PSOCK" stop domu1 > /dev/null 2>&1
  protect_for_save || { emit $n fail "${bad}xl-ha remus before xl migrate: $(tailf "$OUT/xl-save-remus.out" 3)" ",$out"; return; }
  say "+ xl migrate -s /xenlab/fakessh domu1 localhost (domid $pd, protected, committed $CB)"
  timeout 300 xl migrate -s /xenlab/fakessh domu1 localhost > "$OUT/xl-migrate.log" 2>&1; rc=$?
  # a migration to this same Xen renames the arriving copy back to domu1: a new domid, which
  # this protection does not cover; the protection of the old one must have ended
  frag=$(xlsave_outcome xl-migrate $rc "$pd") || bad+="xl migrate (exit $rc) ended in no defined state; "
  out+=",$frag,\"migratedDomid\":$(jnum "$(xl domid domu1 2>/dev/null)")"
  TMO=90 xlha --control "$PSOCK" stop domu1 > /dev/null 2>&1
  if [ -z "$bad" ]; then emit $n ok "" ",$out"; else emit $n fail "$bad" ",$out"; fi
}

# (e) network buffering: sch_plug's semantics on this kernel (test/shim/plug-probe.ts in a netns),
# then protection without -n: the guest's pings reach dom0 only after acks; a stalled backup holds them
icmp_echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp; }
sc_netbuf() {
  local n=netbuf why
  [ -f "$ST/remus.ok" ] || { emit $n fail "needs a running xl-ha protection: $(cat "$ST/remus.why" 2>/dev/null || echo 'remus scenario did not run')"; return; }
  ip netns add xlhaprobe 2>/dev/null
  local probe; probe=$(XLHA_SHIM=/opt/xl-ha/libxl-shim/libxlha.so timeout 90 ip netns exec xlhaprobe node /opt/xl-ha/dist/test/shim/plug-probe.js 2> "$OUT/netbuf-probe.err" | tail -1)
  ip netns del xlhaprobe 2>/dev/null
  echo "$probe" > "$OUT/netbuf-probe.json"
  local steps; steps=$(node /xenlab/jget.cjs plug.steps <<< "$probe")
  local want='{"afterAdd3":426,"enqueuedAfterAdd3":426,"afterReleaseAll":0,"passThrough2":0,"epoch1Held3":426,"epoch2Held2":710,"afterReleaseOne":284,"enqueuedAfterReleaseOne":1420,"afterReleaseAllEnd":0}'
  local probe_ok=0; [ "$steps" = "$want" ] && probe_ok=1
  say "plug probe: $steps (want $want)"
  local net=0; grep -q 'DOMU-NET eth0 up' "$LOG" && net=1
  [ $net = 1 ] || { emit $n fail "the domU has no network (no 'DOMU-NET eth0 up' on its console): $(grep DOMU-NET "$LOG" | tail -1)" ",\"probeOk\":$(jbool $probe_ok)"; return; }
  say "+ xl-ha stop domu1; xl-ha remus -i 100 -F -d $STALL_OPTS (network buffering on) domu1"
  TMO=90 xlha --control "$PSOCK" stop domu1 > "$OUT/netbuf-stop.log" 2>&1
  # shellcheck disable=SC2086
  TMO=180 xlha --control "$PSOCK" remus -i 100 -F -d $STALL_OPTS $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/netbuf-remus.out" 2> "$OUT/netbuf-remus.err"; local rc=$?
  local js c=0 st="" s; s=$(up)
  for _ in $(seq 1 60); do
    js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1)
    mapfile -t f < <(node /xenlab/jget.cjs protections.0.committed protections.0.state protections.0.domid <<< "$js")
    c=${f[0]:-0}; st=${f[1]}
    [[ $c =~ ^[0-9]+$ ]] && [ "$c" -ge 2 ] && break
    [ -n "$st" ] && [ "$st" != error ] && [ "$st" != stopped ] && [ "$st" != failed ] && [ "$st" != lost ] || break
    awk -v a="$(up)" -v b="$s" 'BEGIN{exit !(a - b < 150)}' || break
    sleep 3
  done
  if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -lt 2 ]; then
    rm -f "$ST/remus.ok"; echo "protection with network buffering did not commit" > "$ST/remus.why"
    emit $n fail "protection with network buffering did not commit 2 checkpoints (client exit $rc: $(tailf "$OUT/netbuf-remus.err" 3); state ${st:-?}; primary daemon: $(tailf "$OUT/daemon-p.log" 4))" ",\"probeOk\":$(jbool $probe_ok)"; return
  fi
  local dom=${f[2]} ; local vif=vif$dom.0 ifb=xlhab$dom.0
  { tc qdisc show dev "$ifb"; tc filter show dev "$vif" ingress; } > "$OUT/netbuf-tc.txt" 2>&1
  local plumbing=0; grep -q 'qdisc plug' "$OUT/netbuf-tc.txt" && grep -q 'matchall' "$OUT/netbuf-tc.txt" && grep -qi "redirect to device $ifb" "$OUT/netbuf-tc.txt" && plumbing=1
  # the guest pings once per ping + 1 s sleep of its own time, which runs ~2.5x slower than dom0's
  # under TCG (tick gaps of 2.3-2.9 s): 6 s held 1 or 2 echos, so the flow is counted over 12 s
  local e0 e1; e0=$(icmp_echos); sleep 12; e1=$(icmp_echos)
  local flowing=$((e1 - e0))
  local bpid; bpid=$(cat "$ST/b.pid")
  # well within the failover timeout, and nothing slow meanwhile (no node process: tc reads the backlog)
  say "+ kill -STOP the backup daemon (pid $bpid) for 2.6 s"
  kill -STOP "$bpid"; sleep 0.5
  local a b c2; a=$(icmp_echos); sleep 2; b=$(icmp_echos)
  local held; held=$(tc -s qdisc show dev "$ifb" | sed -n 's/.*backlog \([0-9]*\)b.*/\1/p' | head -1)
  kill -CONT "$bpid"; sleep 4; c2=$(icmp_echos)
  js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1); echo "$js" > "$OUT/netbuf-status.json"
  st=$(node /xenlab/jget.cjs protections.0.state <<< "$js")
  local extra=",\"probeOk\":$(jbool $probe_ok),\"probeSteps\":${steps:-null},\"plumbing\":$(jbool $plumbing),\"echosIn12sProtected\":$flowing,\"echosWhileBackupStopped\":$((b - a)),\"heldBytesWhileStopped\":$(jnum "$held"),\"echosAfterResume\":$((c2 - b)),\"stateAfter\":$(jstr "$st"),\"tc\":$(jstr "$(cat "$OUT/netbuf-tc.txt")")"
  say "netbuf: probe $probe_ok plumbing $plumbing; echos: $flowing in 12 s protected, $((b - a)) while the backup was stopped (held ${held:-?} bytes), $((c2 - b)) after it resumed; state $st"
  if [ $probe_ok = 1 ] && [ $plumbing = 1 ] && [ $flowing -ge 2 ] && [ $((b - a)) -eq 0 ] && [ $((c2 - b)) -ge 1 ] && [ "$st" = protected ]; then
    emit $n ok "" "$extra"
  else
    emit $n fail "network buffering did not behave (want: probe ok, plumbing, >= 2 echos in 12 s, 0 while the backup is stopped, >= 1 after, still protected)" "$extra"
  fi
}

# (f) kemari on Xen: a sync when the guest is about to emit output, i.e. when the vif's plug holds
# a packet. A domU that sends nothing by itself (xlha.nopings) takes no checkpoint; dom0's pings
# make it answer, each burst synced; with the backup stopped no answer leaves. Then remus again
# on a fresh domu1 (the failover scenario needs it).
# dom0's rootfs has no iputils: busybox's ping (-w: seconds until it exits, whatever came back)
bping() { if command -v ping > /dev/null; then ping "$@"; else busybox ping "$@"; fi; }
# The stall scenarios stop the backup for seconds on purpose and check that output is held
# meanwhile: the backup must not be declared dead during the stall, so their protections take a
# failover timeout longer than it (the default 150 ms would end protection: that is issue 17's
# failure detector, not what these scenarios test).
STALL_OPTS="--failover-timeout-ms 10000"
icmp_replies() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchoReps") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp; }
# from raw_status's answer ({"ok":true,"result":{...}}) of a primary daemon with one protection
taken_of() { sed -n 's/.*"checkpointsTaken":\([0-9]*\).*/\1/p' <<< "$1" | head -n 1; }
pstate_of() { node /xenlab/jget.cjs result.protections.0.state <<< "$1"; }
sc_kemari() {
  local n=kemari why js st
  # on its own: the daemons (already up when remus ran), and a domU of its own
  why=$(start_daemon p) || { emit $n fail "primary daemon: $why"; return; }
  why=$(start_daemon b) || { emit $n fail "backup daemon: $why"; return; }
  local qcfg=/xenlab/domu1-quiet.cfg
  # no pings of its own, and no IPv6 (router solicitations, MLD reports): the guest sends nothing
  sed 's/^extra .*/extra    = "console=hvc0 loglevel=4 xlha.nopings ipv6.disable=1"/' "$CFG" > "$qcfg"
  # remus's protection ends here: the scenarios after this one find it again only if it is
  # restarted below (a kemari scenario cut short must not leave a stale remus.ok behind)
  local had_remus=0; [ -f "$ST/remus.ok" ] && had_remus=1
  rm -f "$ST/remus.ok" "$ST/primary.domid"; echo "the kemari scenario stopped remus and did not restart it" > "$ST/remus.why"
  TMO=90 xlha --control "$PSOCK" stop domu1 > "$OUT/kemari-stop.log" 2>&1
  why=$(fresh_domu "$qcfg") || { emit $n fail "a domU without pings: $why"; return; }
  grep -q 'DOMU-NET eth0 up' "$LOG" || { emit $n fail "the domU has no network"; return; }
  say "+ xl-ha kemari -F -d domu1 (sync on output, network buffering on)"
  # shellcheck disable=SC2086
  TMO=180 xlha --control "$PSOCK" kemari -F -d $STALL_OPTS $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/kemari.out" 2> "$OUT/kemari.err"; local rc=$?
  js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1); echo "$js" > "$OUT/kemari-status-0.json"
  st=$(node /xenlab/jget.cjs protections.0.state <<< "$js")
  if [ $rc -ne 0 ] || [ "$st" != protected ]; then
    emit $n fail "kemari protection did not start (client exit $rc: $(tailf "$OUT/kemari.err" 3); state ${st:-?}; primary daemon: $(tailf "$OUT/daemon-p.log" 4))"; return
  fi
  sleep 8 # what the guest sent at link-up is synced and gone
  local vif; vif=vif$(xl domid domu1).0
  guest_tx() { grep 'domU tick' "$LOG" | tail -n 1 | sed -n 's/.* tx=\([0-9-]*\).*/\1/p'; }
  vif_rx() { cat "/sys/class/net/$vif/statistics/rx_packets" 2>/dev/null; }
  js=$(raw_status "$PSOCK"); local t0; t0=$(taken_of "$js")
  local gtx0 vrx0; gtx0=$(guest_tx); vrx0=$(vif_rx)
  sleep 10
  local gtx1 vrx1; gtx1=$(guest_tx); vrx1=$(vif_rx)
  js=$(raw_status "$PSOCK"); local t1; t1=$(taken_of "$js")
  say "kemari: while idle the guest's tx_packets went $gtx0 -> $gtx1, $vif's rx_packets $vrx0 -> $vrx1"
  local idle=$((t1 - t0)) st_idle; st_idle=$(pstate_of "$js")
  say "kemari: $idle checkpoints in 10 s of an idle guest"
  local r0 r1; r0=$(icmp_replies)
  bping -c 5 -i 0.2 -w 30 10.99.0.2 > "$OUT/kemari-ping.txt" 2>&1
  sleep 2; r1=$(icmp_replies)
  js=$(raw_status "$PSOCK"); local t2; t2=$(taken_of "$js")
  local syncs=$((t2 - t1)) answered=$((r1 - r0))
  say "kemari: a burst of 5 pings, $answered answered, $syncs syncs"
  local bpid; bpid=$(cat "$ST/b.pid")
  local a b c2 held ifb; ifb=xlhab$(xl domid domu1).0
  raw_status "$BSOCK" > "$OUT/kemari-status-b-before-stop.json"
  say "+ kill -STOP the backup daemon (pid $bpid) for 2.5 s, pinging meanwhile"
  kill -STOP "$bpid"
  a=$(icmp_replies)
  # ping for 2.5 s: the answers are held by the plug (busybox's ping would wait for them)
  timeout 2.5 busybox ping -c 3 -i 0.5 10.99.0.2 > "$OUT/kemari-ping-stopped.txt" 2>&1
  b=$(icmp_replies)
  held=$(tc -s qdisc show dev "$ifb" 2>/dev/null | sed -n 's/.*backlog \([0-9]*\)b.*/\1/p' | head -1)
  kill -CONT "$bpid"; sleep 5; c2=$(icmp_replies)
  raw_status "$BSOCK" > "$OUT/kemari-status-b.json"
  js=$(raw_status "$PSOCK"); echo "$js" > "$OUT/kemari-status.json"
  st=$(pstate_of "$js")
  local extra=",\"checkpointsIn10sIdle\":$(jnum "$idle"),\"guestPacketsSentWhileIdle\":$(jnum "$((gtx1 - gtx0))"),\"vifPacketsWhileIdle\":$(jnum "$((vrx1 - vrx0))"),\"stateWhileIdle\":$(jstr "$st_idle"),\"burstAnswered\":$answered,\"syncsForBurst\":$(jnum "$syncs"),\"answersWhileBackupStopped\":$((b - a)),\"heldBytesWhileStopped\":$(jnum "$held"),\"answersAfterResume\":$((c2 - b)),\"stateAfter\":$(jstr "$st"),\"outputEvents\":$(jnum "$(node /xenlab/jget.cjs result.protections.0.outputEvents <<< "$js")")"
  say "kemari: idle $idle; burst $answered answered in $syncs syncs; $((b - a)) answers while the backup was stopped (held ${held:-?} bytes), $((c2 - b)) after; state $st"
  local ok=0
  [ "$idle" = 0 ] && [ "$st_idle" = protected ] && [ "$answered" -eq 5 ] && [ "$syncs" -ge 1 ] && [ $((b - a)) -eq 0 ] && [ $((c2 - b)) -ge 1 ] && [ "$st" = protected ] && ok=1
  # back to remus on a fresh domu1 for the scenarios that follow, if remus ran before
  TMO=90 xlha --control "$PSOCK" stop domu1 > "$OUT/kemari-stop2.log" 2>&1
  why=$(fresh_domu) || say "recreating domu1 failed: $why"
  if [ $had_remus = 1 ]; then
    # shellcheck disable=SC2086
    if TMO=180 xlha --control "$PSOCK" remus -i 100 -F -d $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/kemari-remus.out" 2> "$OUT/kemari-remus.err"; then
      js=$(TMO=30 xlha --control "$PSOCK" status --json 2>&1)
      node /xenlab/jget.cjs protections.0.domid <<< "$js" > "$ST/primary.domid" 2>/dev/null
      touch "$ST/remus.ok"
    else
      echo "remus after kemari did not start: $(tailf "$OUT/kemari-remus.err" 3)" > "$ST/remus.why"
    fi
  fi
  if [ $ok = 1 ]; then emit $n ok "" "$extra"
  else emit $n fail "kemari did not behave (want: 0 checkpoints in 10 s idle while protected, 5 of 5 pings answered in >= 1 sync, 0 answers while the backup is stopped, >= 1 after, still protected)" "$extra"; fi
}

# (b) primary failure: destroy the protected domU, kill -9 the primary daemon; the backup takes over
sc_failover() {
  local n=failover
  [ -f "$ST/remus.ok" ] || { emit $n fail "needs a running xl-ha protection: $(cat "$ST/remus.why" 2>/dev/null || echo 'remus scenario did not run')"; return; }
  local pri; pri=$(cat "$ST/primary.domid" 2>/dev/null); [ -n "$pri" ] || pri=$(xl domid domu1 2>/dev/null)
  xl list > "$OUT/failover-before.txt" 2>&1
  # the primary host dies: its daemon first (a daemon that sees its domain destroyed ends the
  # protection cleanly, as after an admin's xl destroy, and the backup then drops its replica)
  say "+ kill -9 the primary daemon; xl destroy $pri (the primary domu1)"
  [ -n "$pri" ] || { emit $n fail "no primary domid to fail (neither status --json nor xl domid domu1 gave one)"; return; }
  kill -9 "$(cat "$ST/p.pid")" 2>/dev/null
  timeout 60 xl destroy "$pri" > "$OUT/failover-destroy.log" 2>&1; local drc=$?
  local s; s=$(up); local found="" name="" bstate=""
  await_takeover "$pri"
  local took; took=$(dt "$s")
  xl list > "$OUT/failover-after.txt" 2>&1
  TMO=30 xlha --control "$BSOCK" status --json > "$OUT/failover-status-b.json" 2>&1
  bstate=$(node /xenlab/jget.cjs replicas.0.state < "$OUT/failover-status-b.json")
  local a b; a=$(ticks); sleep 8; b=$(ticks)
  local extra=",\"primaryDomid\":$(jnum "$pri"),\"destroyRc\":$drc,\"backupDomain\":$(jstr "$name"),\"backupDomid\":$(jnum "$found"),\"runningAfterSecs\":$(jnum "$took"),\"ticksIn8s\":$((b - a)),\"backupState\":$(jstr "$bstate"),\"xlList\":$(jstr "$(cat "$OUT/failover-after.txt")")"
  if [ "$drc" -ne 0 ]; then emit $n fail "xl destroy $pri (the primary) failed (exit $drc): $(tailf "$OUT/failover-destroy.log" 3)" "$extra"
  elif [ "$bstate" != active ]; then emit $n fail "the backup's replica is ${bstate:-?}, not active, 90 s after the primary died; backup daemon: $(tailf "$OUT/daemon-b.log" 8)" "$extra"
  elif [ -n "$found" ] && [ "$b" -gt "$a" ]; then emit $n ok "" "$extra"
  elif [ -z "$found" ]; then emit $n fail "no running domain other than the destroyed primary within 90 s; backup daemon: $(tailf "$OUT/daemon-b.log" 8)" "$extra"
  else emit $n fail "domain $name (domid $found) runs but the guest did not tick in 8 s" "$extra"; fi
}

# The primary daemon, with the default watchdog, protects a fresh domu1 (to a black hole: no
# backup needed) and is then hung with SIGSTOP. Xen must reset the host: "Watchdog timer fired for
# domain 0" on the serial console, and QEMU exits (-no-reboot). dom0 cannot report that itself:
# run.ts reads it from the serial log. This scenario reports only a failure (no reset in 90 s).
sc_watchdog() {
  local n=watchdog why
  stop_daemon p
  why=$(fresh_domu) || { emit $n fail "$why"; return; }
  P_WATCHDOG=""
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  TMO=240 xlha --control "$PSOCK" remus -b -F -n -d -i 200 domu1 "127.0.0.1:$PORT" > "$OUT/watchdog-remus.out" 2>&1 || { emit $n fail "xl-ha remus -b: $(tailf "$OUT/watchdog-remus.out" 3)"; return; }
  local st; st=$(raw_status "$PSOCK")
  echo "$st" > "$OUT/watchdog-status.json"
  local armed timeout
  armed=$(node /xenlab/jget.cjs result.watchdog.armed <<< "$st"); timeout=$(node /xenlab/jget.cjs result.watchdog.timeoutSec <<< "$st")
  [ "$armed" = true ] || { emit $n fail "the protecting daemon did not arm the watchdog: $(head -c 300 "$OUT/watchdog-status.json")"; return; }
  sync
  local pid; pid=$(cat "$ST/p.pid")
  echo "XLHA-WATCHDOG-WAIT {\"timeoutSec\":$(jnum "$timeout"),\"daemonPid\":$pid}"
  kill -STOP "$pid"
  local s; s=$(up)
  for _ in $(seq 1 18); do sleep 5; echo "XLHA-WATCHDOG-TICK $(dt "$s")"; done
  kill -CONT "$pid"
  emit $n fail "dom0 still runs $(dt "$s") s after its protecting daemon hung with a ${timeout} s watchdog armed"
}

# (c) the product's headline: install.sh into this dom0, the daemon started as the systemd unit
# starts it, then the stock `xl create` of a cfg with ha="remus" ends protected with nothing else
# typed; a daemon restart resumes it; the primary destroyed, the backup runs the domain and
# protects it again once the old primary's daemon is back.
# The lab's two hosts share this Xen, so (1) the backup daemon gets a config_dirs without the
# cfg (on its own host it would never see the domain run before a failover), and (2) the old
# primary comes back with a fresh state dir and no config_dirs, as a rebooted host whose copy of
# the domain died with it: here the domain that now runs on the backup is in the same Xen, and
# the old primary must not take it for its own. Both daemons run with --watchdog 0 (one dom0).
# the primary at the default control socket, where the vif-ha hook (xl-ha hotplug) finds it
CP_SOCK=/run/xl-ha/control.sock; CB_SOCK=/run/xl-ha/cb.sock; CP_PORT=7721
# prot_field <sock> <domain> <field>: that field of the domain's protection in the daemon's status
prot_field() {
  raw_status "$1" | node -e 'let d; try { d = JSON.parse(require("fs").readFileSync(0, "utf8")).result; } catch { process.exit(0); }
    const p = (d.protections || []).find((x) => x.domain === process.argv[1]); const v = p && p[process.argv[2]];
    process.stdout.write(v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));' "$2" "$3" 2>/dev/null
}
# wait_prot <sock> <domain> <state> <seconds>: 0 once the protection is in that state
wait_prot() {
  local s; s=$(up)
  while awk -v a="$s" -v b="$(up)" -v m="$4" 'BEGIN{exit !(b - a < m)}'; do
    [ "$(prot_field "$1" "$2" state)" = "$3" ] && return 0
    sleep 5
  done
  return 1
}
# start_as <who> <sock> <args...>: an installed xl-ha daemon (/usr/sbin/xl-ha, as xl-ha.service runs it)
start_as() {
  local who=$1 sock=$2 pid; shift 2
  local dlog=$OUT/daemon-$who.log
  rm -f "$sock"; [ -f "$dlog" ] && mv "$dlog" "$OUT/daemon-$who.$(date +%s%N).log"
  (exec setsid /usr/sbin/xl-ha --backend xen --control "$sock" "$@" > "$dlog" 2>&1 < /dev/null) &
  pid=$!; echo "$pid" > "$ST/$who.pid"
  for _ in $(seq 1 120); do
    [ -S "$sock" ] && return 0
    pid_alive "$pid" || { echo "xl-ha daemon $who exited before opening $sock: $(tailf "$dlog" 6)"; return 1; }
    sleep 1
  done
  echo "xl-ha daemon $who did not open $sock within 120 s: $(tailf "$dlog" 6)"; return 1
}
# whatever way xl-create-ha ends, nothing of it may stay for the later scenarios: its daemons
# (the backup's port is theirs), its cfg (a daemon would find domu1's name in it) and the install
xl_create_ha_cleanup() {
  stop_daemon cp; stop_daemon cb
  rm -f /etc/xen/domu1-ha.cfg /etc/xen/xl-ha-lab-b.conf /etc/xen/xl-ha-lab-p2.conf
  [ -e /usr/lib/xl-ha/install-manifest ] && /opt/xl-ha/install.sh --uninstall >> "$OUT/uninstall.log" 2>&1
  return 0
}
sc_xl-create-ha() {
  local n=xl-create-ha why s extra="" cfg=/etc/xen/domu1-ha.cfg
  trap xl_create_ha_cleanup EXIT; trap "exit 143" TERM
  stop_daemon p; stop_daemon b
  for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
  pkill -9 -f 'xl.*migrate-receive' 2>/dev/null
  # 1. install, as the README says
  s=$(up)
  if ! /opt/xl-ha/install.sh > "$OUT/install.log" 2>&1; then emit $n fail "install.sh failed: $(tailf "$OUT/install.log" 6)"; return; fi
  local inst; inst=$(dt "$s")
  for f in /usr/sbin/xl-ha /etc/xen/scripts/vif-ha /etc/xen/scripts/block-ha /etc/xen/xl-ha.conf; do
    [ -e "$f" ] || { emit $n fail "install.sh did not install $f: $(tailf "$OUT/install.log" 6)"; return; }
  done
  # 2. the two hosts' pairings, each knowing where the other listens
  local K=/etc/xen/xl-ha/ch; rm -rf "$K"; mkdir -p "$K"
  if ! { /usr/sbin/xl-ha --keys "$K/p" keygen --force --host-name lab-p --address "127.0.0.1:$PORT" lab-b &&
    /usr/sbin/xl-ha --keys "$K/b" pair --force --host-name lab-b --address "127.0.0.1:$CP_PORT" lab-p "$K/p/lab-b.key"; } > "$OUT/ch-pair.log" 2>&1; then
    emit $n fail "pairing failed: $(tailf "$OUT/ch-pair.log" 4)"; return
  fi
  mkdir -p /var/lib/xl-ha/nocfg; rm -rf /var/lib/xl-ha/cp /var/lib/xl-ha/cb /var/lib/xl-ha/cp2
  printf '[daemon]\nconfig_dirs = /var/lib/xl-ha/nocfg\n' > /etc/xen/xl-ha-lab-b.conf
  # 3. the domain's cfg: the lab's domU, its vif through vif-ha, and the ha keys
  sed -e 's/bridge=xenbr0,/bridge=xenbr0,script=vif-ha,/' "$CFG" > "$cfg"
  printf 'ha = "remus"\nha_peer = "127.0.0.1:%s"\nha_interval_ms = 100\nha_disk = "off"   # domu1 has no disk; on Xen disk replication is another issue\n' "$PORT" >> "$cfg"
  why=$(start_as cb "$CB_SOCK" --keys "$K/b" daemon -l "127.0.0.1:$PORT" --host-name lab-b --state-dir /var/lib/xl-ha/cb --conf /etc/xen/xl-ha-lab-b.conf --watchdog 0) || { emit $n fail "backup daemon: $why"; return; }
  why=$(start_as cp "$CP_SOCK" --keys "$K/p" daemon -l "127.0.0.1:$CP_PORT" --host-name lab-p --state-dir /var/lib/xl-ha/cp --watchdog 0) || { emit $n fail "primary daemon: $why"; return; }
  # 4. stock xl create; nothing else is typed
  local l0; l0=$(lines "$LOG"); s=$(up)
  if ! timeout 120 xl create "$cfg" > "$OUT/ch-create.log" 2>&1; then emit $n fail "xl create $cfg failed: $(tailf "$OUT/ch-create.log" 5)"; return; fi
  if ! wait_prot "$CP_SOCK" domu1 protected 420; then
    emit $n fail "xl create of a cfg with ha=\"remus\" did not end protected within 420 s (state $(prot_field "$CP_SOCK" domu1 state); $(prot_field "$CP_SOCK" domu1 error)$(prot_field "$CP_SOCK" domu1 waiting)); primary daemon: $(tailf "$OUT/daemon-cp.log" 6)"; return
  fi
  local created; created=$(dt "$s")
  raw_status "$CP_SOCK" > "$OUT/ch-status-1.json"
  # 5. a daemon restart (systemctl restart xl-ha): protection resumes by itself
  stop_daemon cp; s=$(up)
  why=$(start_as cp "$CP_SOCK" --keys "$K/p" daemon -l "127.0.0.1:$CP_PORT" --host-name lab-p --state-dir /var/lib/xl-ha/cp --watchdog 0) || { emit $n fail "primary daemon restart: $why"; return; }
  if ! wait_prot "$CP_SOCK" domu1 protected 420; then
    emit $n fail "after a daemon restart protection did not resume within 420 s (state $(prot_field "$CP_SOCK" domu1 state)); $(tailf "$OUT/daemon-cp.log" 6)"; return
  fi
  local resumed; resumed=$(dt "$s")
  # 6. the primary host dies: its daemon killed, its domain destroyed
  local pri; pri=$(xl domid domu1 2>/dev/null)
  kill -9 "$(cat "$ST/cp.pid")" 2>/dev/null; timeout 60 xl destroy "$pri" > /dev/null 2>&1
  s=$(up); local found=""
  for _ in $(seq 1 120); do
    is_running domu1 && [ "$(xl domid domu1 2>/dev/null)" != "$pri" ] && { found=$(xl domid domu1); break; }
    sleep 1
  done
  [ -n "$found" ] || { emit $n fail "the backup did not run domu1 within 120 s of the primary's death: $(tailf "$OUT/daemon-cb.log" 6)"; return; }
  local failover; failover=$(dt "$s")
  local a b; a=$(ticks); sleep 8; b=$(ticks)
  [ "$b" -gt "$a" ] || { emit $n fail "domu1 runs on the backup but did not tick in 8 s"; return; }
  # 7. the old primary's daemon is back (a rebooted host): the backup protects domu1 to it again
  printf '[daemon]\nconfig_dirs = /var/lib/xl-ha/nocfg\n' > /etc/xen/xl-ha-lab-p2.conf
  s=$(up)
  why=$(start_as cp "$CP_SOCK" --keys "$K/p" daemon -l "127.0.0.1:$CP_PORT" --host-name lab-p --state-dir /var/lib/xl-ha/cp2 --conf /etc/xen/xl-ha-lab-p2.conf --watchdog 0) || { emit $n fail "old primary's daemon: $why"; return; }
  if ! wait_prot "$CB_SOCK" domu1 protected 480; then
    emit $n fail "the domain that failed over was not protected again within 480 s of the old primary's return (state $(prot_field "$CB_SOCK" domu1 state); $(prot_field "$CB_SOCK" domu1 waiting)); backup daemon: $(tailf "$OUT/daemon-cb.log" 6)"; return
  fi
  local reprot; reprot=$(dt "$s")
  local hist; hist=$(prot_field "$CB_SOCK" domu1 history)
  raw_status "$CB_SOCK" > "$OUT/ch-status-b.json"
  extra=",\"installSecs\":$(jnum "$inst"),\"protectedAfterCreateSecs\":$(jnum "$created"),\"resumedAfterRestartSecs\":$(jnum "$resumed"),\"failoverSecs\":$(jnum "$failover"),\"reprotectedSecs\":$(jnum "$reprot"),\"history\":${hist:-null}"
  # 8. clean up (the EXIT trap does it again on any other way out): the cfg must not protect the
  # later scenarios' domu1, and --uninstall removes all that install.sh put in
  stop_daemon cp; stop_daemon cb
  for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
  rm -f "$cfg" /etc/xen/xl-ha-lab-b.conf /etc/xen/xl-ha-lab-p2.conf
  if ! /opt/xl-ha/install.sh --uninstall > "$OUT/uninstall.log" 2>&1; then emit $n fail "install.sh --uninstall failed: $(tailf "$OUT/uninstall.log" 4)" "$extra"; return; fi
  [ -e /usr/sbin/xl-ha ] && { emit $n fail "install.sh --uninstall left /usr/sbin/xl-ha" "$extra"; return; }
  emit $n ok "" "$extra"
}

# (e) disk replication (issue 19): domu1 on a block-ha disk, which the primary daemon serves over
# NBD for blkback. A writer in the guest appends numbered records, each fsynced before it prints
# its number (files/domu-init, xlha.writer). Measured: the guest's writes on that disk unprotected,
# then protected (remus -i 100, disk replication on): records (fsync each) per second and 4 MiB
# fsynced writes in MiB/s. Then the primary dies mid-write. On the backup's disk (its own image,
# under replica_disks) every record printed before the last acknowledged checkpoint must be there,
# the records must run 1..D without a gap or a repeat (none of a later epoch: the failed-over guest
# goes on from its checkpoint's count), and e2fsck, after the journal replay, must find nothing.
DISK_IMG=/var/lib/xlha-lab/disk.img; DISK_CFG=/xenlab/domu1-disk.cfg; REPLICA_DIR=/var/lib/xl-ha/replicas
# the highest record number the guest printed in the given console logs
last_rec() { cat "$@" 2>/dev/null | sed -n 's/.*DOMU-REC \([0-9][0-9]*\).*/\1/p' | sort -n | tail -n 1; }
# disk_window <secs>: what the guest wrote in that many seconds: "<records/s> <bulk MiB/s or null> <bulk samples>"
disk_window() {
  local l0 l1 s el; l0=$(lines "$LOG"); s=$(up); sleep "$1"; l1=$(lines "$LOG"); el=$(dt "$s")
  sed -n "$((l0 + 1)),${l1}p" "$LOG" | awk -v el="$el" '
    /DOMU-REC [0-9]/ { r++ }
    /DOMU-BULK n=/ { b = 0; t = 0
      if (match($0, /bytes=[0-9]+/)) b = substr($0, RSTART + 6, RLENGTH - 6) + 0
      if (match($0, /secs=[0-9.]+/)) t = substr($0, RSTART + 5, RLENGTH - 5) + 0
      if (t > 0) { tb += b; ts += t; nb++ } }
    END { printf "%.2f %s %d\n", r / el, (ts > 0 ? sprintf("%.3f", tb / ts / 1048576) : "null"), nb }'
}
disk_cleanup() {
  stop_daemon p; stop_daemon b
  for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
  sed -i '/^replica_disks/d' "$BKEYS/lab-p.key" 2>/dev/null
  rm -f "$DISK_CFG" /etc/xen/scripts/block-ha /etc/xen/scripts/block-ha.real /tmp/disk-check.img /tmp/disk-primary.img
  return 0
}
sc_disk() {
  local n=disk why s c
  for c in nbd-client mkfs.ext4 e2fsck debugfs; do
    command -v "$c" > /dev/null || { emit $n fail "$c is not in this dom0 (setup.sh adds nbd-client to the rootfs; rerun it)"; return; }
  done
  modprobe nbd > "$OUT/disk-modprobe.log" 2>&1 || { emit $n fail "modprobe nbd failed: $(tailf "$OUT/disk-modprobe.log" 2)"; return; }
  modprobe loop > /dev/null 2>&1  # Xen's block script attaches the replica's image with losetup
  trap disk_cleanup EXIT; trap "exit 143" TERM
  stop_daemon p; stop_daemon b
  for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
  pkill -9 -f 'xl.*migrate-receive' 2>/dev/null
  # where libxl finds script=block-ha; xl runs it with xl's environment, so its xl-ha finds the
  # primary daemon's socket
  # (through a wrapper that keeps the hook's warnings: libxl logs a hotplug script's output only
  # when it fails, and block-ha does not fail a disk over xl-ha)
  install -m 755 /opt/xl-ha/hooks/block-ha /etc/xen/scripts/block-ha.real
  printf '#!/bin/sh\necho "[$(cut -d" " -f1 /proc/uptime)] block-ha $* XENBUS_PATH=$XENBUS_PATH" >> %s\nexec /etc/xen/scripts/block-ha.real "$@" 2>> %s\n' "$OUT/block-ha.log" "$OUT/block-ha.log" > /etc/xen/scripts/block-ha
  chmod 755 /etc/xen/scripts/block-ha
  export XLHA_CONTROL=$PSOCK
  # node starts slowly under TCG: the hook's xl-ha may take seconds to answer (libxl allows 40)
  export XLHA_HOTPLUG_TIMEOUT=30
  why=$(pair_hosts) || { emit $n fail "$why"; return; }
  # the backup's own policy for lab-p: where it keeps replicated disks
  grep -q '^replica_disks' "$BKEYS/lab-p.key" || printf 'replica_disks = %s\n' "$REPLICA_DIR" >> "$BKEYS/lab-p.key"
  rm -rf "$REPLICA_DIR"
  why=$(start_daemon b) || { emit $n fail "$why"; return; }
  why=$(start_daemon p) || { emit $n fail "$why"; return; }
  mkdir -p "${DISK_IMG%/*}"; rm -f "$DISK_IMG"
  if ! { truncate -s 32M "$DISK_IMG" && mkfs.ext4 -q -F -b 4096 "$DISK_IMG"; } > "$OUT/disk-mkfs.log" 2>&1; then emit $n fail "mkfs.ext4 $DISK_IMG: $(tailf "$OUT/disk-mkfs.log" 3)"; return; fi
  sed -e 's/^extra .*/extra    = "console=hvc0 loglevel=4 xlha.writer xlha.nopings"/' "$CFG" > "$DISK_CFG"
  echo "disk     = [ 'format=raw,vdev=xvda,script=block-ha,target=$DISK_IMG' ]" >> "$DISK_CFG"
  s=$(up)
  why=$(fresh_domu "$DISK_CFG") || { emit $n fail "$why; xl log: $(tailf /var/log/xen/xl-domu1.log 4); primary daemon: $(tailf "$OUT/daemon-p.log" 4)"; return; }
  local pri; pri=$(xl domid domu1 2>/dev/null)
  local pdev; pdev=$(xenstore-read "/local/domain/0/backend/vbd/$pri/51712/physical-device-path" 2>/dev/null)
  [[ $pdev == /dev/nbd* ]] || { emit $n fail "domu1's disk is not on NBD (physical-device-path '$pdev'); block-ha: $(tailf "$OUT/block-ha.log" 6); primary daemon: $(tailf "$OUT/daemon-p.log" 4)"; return; }
  say "domu1 (domid $pri) on $pdev after $(dt "$s") s"
  for _ in $(seq 1 90); do grep -q 'DOMU-REC ' "$LOG" && break; sleep 1; done
  grep -q 'DOMU-REC ' "$LOG" || { emit $n fail "the guest wrote no record within 90 s: $(grep 'DOMU-DISK' "$LOG" | tail -n 1)"; return; }
  # unprotected, on the same disk and the same NBD path
  local un; un=$(disk_window 30)
  say "unprotected: records/s, bulk MiB/s, bulk samples: $un"
  s=$(up)
  say "+ xl-ha remus -i 100 -F -n $XLHA_OPTS domu1 (disk replication on)"
  # shellcheck disable=SC2086
  TMO=400 xlha --control "$PSOCK" remus -i 100 -F -n $XLHA_OPTS domu1 "127.0.0.1:$PORT" > "$OUT/disk-remus.out" 2>&1
  local st pst
  for _ in $(seq 1 60); do
    st=$(raw_status "$PSOCK"); pst=$(node /xenlab/jget.cjs result.protections.0.state <<< "$st")
    [ "$pst" = protected ] && break
    [ "$pst" = error ] || [ "$pst" = stopped ] || [ -z "$pst" ] && break
    sleep 5
  done
  [ "$pst" = protected ] || { emit $n fail "protection with disk replication did not start (state '${pst:-none}'): $(tailf "$OUT/disk-remus.out" 3); primary: $(tailf "$OUT/daemon-p.log" 4); backup: $(tailf "$OUT/daemon-b.log" 4)"; return; }
  local protsecs; protsecs=$(dt "$s")
  local devs; devs=$(node /xenlab/jget.cjs result.protections.0.devices <<< "$st")
  [[ $devs == *disk* ]] || { emit $n fail "the protection has no disk device (devices: $devs)"; return; }
  local img=$REPLICA_DIR/domu1.xvda.img
  [ -f "$img" ] || { emit $n fail "no replica image $img on the backup: $(ls -la "$REPLICA_DIR" 2>&1 | tail -n 3)"; return; }
  say "protected after $(dt "$s") s; the backup's disk: $(ls -la "$img")"
  local pr; pr=$(disk_window 30)
  say "protected: records/s, bulk MiB/s, bulk samples: $pr"
  raw_status "$PSOCK" > "$OUT/disk-status-p.json"; raw_status "$BSOCK" > "$OUT/disk-status-b.json"
  # the primary dies mid-write. p0: the last record printed now; then three more commits, so
  # that a checkpoint suspended after p0 was printed is acknowledged (two may be in flight)
  local p0 c0; p0=$(last_rec "$LOG"); c0=$(committed_of "$(raw_status "$PSOCK")")
  [ -n "$c0" ] || { emit $n fail "no committed count in the primary's status"; return; }
  for _ in $(seq 1 120); do c=$(committed_of "$(raw_status "$PSOCK")"); [ -n "$c" ] && [ "$c" -ge $((c0 + 3)) ] && break; sleep 0.5; done
  [ -n "$c" ] && [ "$c" -ge $((c0 + 3)) ] || { emit $n fail "checkpoints stopped being committed (committed $c, was $c0)"; return; }
  say "+ kill -9 the primary daemon; xl destroy $pri (record $p0 printed before checkpoint $((c0 + 1)), committed $c)"
  kill -9 "$(cat "$ST/p.pid")" 2>/dev/null
  local pk; pk=$(last_rec "$LOG")
  timeout 60 xl destroy "$pri" > "$OUT/disk-destroy.log" 2>&1
  s=$(up); local found=""
  # the yardstick for the fsck below: the primary's own image after the same crash, unreplicated
  cp "$DISK_IMG" /tmp/disk-primary.img 2>/dev/null
  for _ in $(seq 1 120); do
    while read -r _ id _ _ stt _; do
      [ "$id" = "$pri" ] && continue
      if [[ $stt =~ [rb] ]] && ! [[ $stt =~ [psc] ]]; then found=$id; break; fi
    done < <(xl list 2>/dev/null | awk 'NR>2')
    [ -n "$found" ] && break
    sleep 1
  done
  [ -n "$found" ] || { emit $n fail "the backup ran no domain within 120 s of the primary's death: $(tailf "$OUT/daemon-b.log" 6)"; return; }
  local fo; fo=$(dt "$s")
  # the failed-over guest goes on writing, from its checkpoint's count
  local r0 r1; r0=$(cat "$CON"/guest-*.log 2>/dev/null | grep -c 'DOMU-REC '); sleep 10; r1=$(cat "$CON"/guest-*.log 2>/dev/null | grep -c 'DOMU-REC ')
  # the backup's disk as the failed-over guest leaves it when it dies too (as after a crash)
  timeout 60 xl destroy "$found" > /dev/null 2>&1; sleep 2
  cp "$img" /tmp/disk-check.img
  # what a mount does first (the journal replayed, orphans released; anything else e2fsck would
  # fix is counted), then a read-only check that must find nothing. The superblock's summary of free
  # blocks and inodes ("Free blocks count wrong (a, counted=b)", no "for group") is not a fault
  # after a crash: ext4 keeps those totals in per-CPU counters and writes them at unmount, and
  # e2fsck fixes them silently at boot (PR_PREEN_NOMSG; PR_NO_OK). Every other fix fails the scenario;
  # the per-group counts are journaled and must be right.
  e2fsck -fy /tmp/disk-check.img > "$OUT/disk-fsck-replay.log" 2>&1; local jrc=$?
  local sumfix; sumfix=$(grep -cE '^Free (blocks|inodes) count wrong \(' "$OUT/disk-fsck-replay.log")
  local fixes; fixes=$(( $(grep -cE '\? yes' "$OUT/disk-fsck-replay.log") - sumfix ))
  e2fsck -fn /tmp/disk-check.img > "$OUT/disk-fsck.log" 2>&1; local frc=$?
  local prifix="null" prisum="null"
  if [ -f /tmp/disk-primary.img ]; then
    e2fsck -fy /tmp/disk-primary.img > "$OUT/disk-fsck-primary.log" 2>&1
    prisum=$(grep -cE '^Free (blocks|inodes) count wrong \(' "$OUT/disk-fsck-primary.log")
    prifix=$(( $(grep -cE '\? yes' "$OUT/disk-fsck-primary.log") - prisum ))
    rm -f /tmp/disk-primary.img
  fi
  debugfs -R 'cat /rec' /tmp/disk-check.img > "$OUT/disk-rec.txt" 2> /dev/null
  # the records on the backup's disk: "rec 1" … "rec D", each once, in order
  local chk; chk=$(awk '{ if ($0 == "rec " NR) d = NR; else { bad = NR ": " $0; exit } } END { printf "%d %s\n", d, (bad == "" ? "-" : bad) }' "$OUT/disk-rec.txt")
  local d=${chk%% *} bad=${chk#* }
  local ur uu ub prr pu pb; read -r ur uu ub <<< "$un"; read -r prr pu pb <<< "$pr"
  local extra=",\"recordsPerSec\":{\"unprotected\":$(jnum "$ur"),\"protected\":$(jnum "$prr")},\"bulkMiBPerSec\":{\"unprotected\":$(jnum "$uu"),\"protected\":$(jnum "$pu"),\"samples\":[$(jnum "$ub"),$(jnum "$pb")]},\"protectedAfterSecs\":$(jnum "$protsecs"),\"printedBeforeAckedCheckpoint\":$(jnum "$p0"),\"printedAtKill\":$(jnum "$pk"),\"recordsOnBackupDisk\":$(jnum "$d"),\"firstBadRecord\":$(jstr "$bad"),\"recordsAfterFailoverIn10s\":$((r1 - r0)),\"failoverSecs\":$(jnum "$fo"),\"fsckReplayRc\":$jrc,\"fsckReplayFixes\":$(jnum "$fixes"),\"fsckSummaryFixes\":$(jnum "$sumfix"),\"primaryCrashFsck\":{\"fixes\":$prifix,\"summaryFixes\":$prisum},\"fsckRc\":$frc,\"committedAtKill\":$(jnum "$c")"
  say "disk: $extra"
  if [ "$bad" != "-" ]; then emit $n fail "the backup's disk has a record out of sequence after record $d (line $bad): not the disk of one checkpoint" "$extra"
  elif [ -z "$p0" ] || [ "$d" -lt "$p0" ]; then emit $n fail "the backup's disk has records 1..$d, but record $p0 was printed (so fsynced) before an acknowledged checkpoint" "$extra"
  elif [ "$frc" -ne 0 ] || [ "$jrc" -gt 1 ] || [ "$fixes" != 0 ]; then emit $n fail "e2fsck of the backup's disk: replay pass exit $jrc with $fixes fixes besides the superblock's free counts ($(grep -B1 -E '\? yes' "$OUT/disk-fsck-replay.log" | grep -vE '^(Free (blocks|inodes) count wrong \(|Fix\? yes|--|$)' | head -n 3 | tr '\n' ' ')), then check exit $frc: $(tailf "$OUT/disk-fsck.log" 6)" "$extra"
  elif [ $((r1 - r0)) -le 0 ]; then emit $n fail "the failed-over guest wrote no record in 10 s" "$extra"
  else emit $n ok "" "$extra"; fi
}

# diagnostic: what each step of the relay costs in this dom0 (run only when named in xenlab.scenarios)
sc_relay-costs() {
  local js; js=$(timeout 100 node /opt/xl-ha/dist/test/xen-lab/relay-costs.js 2> "$OUT/relay-costs.err")
  if [[ $js == "{"* ]] && [[ $js != *'"error"'* ]]; then emit relay-costs ok "" ",\"costs\":$js"
  else emit relay-costs fail "relay-costs.js: ${js:-no output} $(tailf "$OUT/relay-costs.err" 4)"; fi
}

# ---------------------------------------------------------------- driver
if [ "${1:-}" = --one ]; then "sc_$2"; exit 0; fi

SCENARIOS="stock-remus:$((REMUS_SECS + 240)) shim:240 remus:$((REMUS_SECS + 420)) xlha-remus-figures:30 netbuf:300 kemari:480 failover:150 xl-create-ha:1500 stock-remus-tcp:$((REMUS_SECS + 240)) stock-remus-after:$((REMUS_SECS + 240)) xlha-remus-after:$((REMUS_SECS + 240)) tls-cost:$((REMUS_SECS + 360)) xl-save:900 transfer:$((3 * REMUS_SECS + 900)) disk:600 watchdog:300"
# diagnostics run first, and only when named in xenlab.scenarios
for d in relay-costs:120; do [[ "+$ONLY+" == *"+${d%%:*}+"* ]] && SCENARIOS="$d $SCENARIOS"; done
: > "$RES"
say "XLHA-SCENARIOS-START remus_secs=$REMUS_SECS budget=$BUDGET only=${ONLY:-all}"
xl info > "$OUT/xl-info.txt" 2>&1; grep -E '^(xen_version|virt_caps|total_memory|free_memory|nr_cpus)' "$OUT/xl-info.txt"
say "node $(node --version 2>&1), xl-ha $(node -p 'require("/opt/xl-ha/package.json").version' 2>&1), shim $(ls /opt/xl-ha/libxl-shim/libxlha.so 2>&1)"
# how fast this boot is: boots differ a lot under TCG (the same code and stock both vary by up to
# 2x from one boot to the next). CRC-32 of a checkpoint's 1.8 MB in node, and node's start-up.
speed_s=$(up)
speed=$(timeout 60 node -e 'const {crc32}=require("zlib"); const b=Buffer.alloc(1800000, 7); for (let i = 0; i < 3; i++) crc32(b);
  const t=performance.now(); for (let i = 0; i < 30; i++) crc32(b); process.stdout.write(((performance.now() - t) / 30).toFixed(2));' 2>/dev/null)
ys=$(yardstick)
# Scenario time limits follow the boot's speed: they were set on boots whose yardstick was about
# YARDSTICK_TYPICAL_MS, and a boot twice as slow (seen under TCG on another host, or with the
# host loaded) needs twice as long for the same work. Never below the set limits, at most 4x.
YARDSTICK_TYPICAL_MS=350
LIMIT_FACTOR=$(awk -v y="$ys" -v t="$YARDSTICK_TYPICAL_MS" 'BEGIN { f = y / t; if (f < 1 || y !~ /^[0-9]+$/) f = 1; if (f > 4) f = 4; printf "%.2f", f }')
echo "XLHA-SPEED {\"crc32MsPer1800KB\":$(jnum "$speed"),\"nodeRunSecs\":$(jnum "$(dt "$speed_s")"),\"yardstickMs\":$(jnum "$ys"),\"limitFactor\":$(jnum "$LIMIT_FACTOR")}"
say "scenario time limits x$LIMIT_FACTOR (yardstick $ys ms; $YARDSTICK_TYPICAL_MS ms on a typical boot)"
for entry in $SCENARIOS; do
  name=${entry%%:*}; tmo=$(awk -v t="${entry##*:}" -v f="$LIMIT_FACTOR" 'BEGIN { printf "%d", t * f }')
  if [ -n "$ONLY" ] && ! [[ "+$ONLY+" == *"+$name+"* ]]; then emit "$name" skipped "not selected (xenlab.scenarios=$ONLY)"; continue; fi
  left=$(awk -v b="$BUDGET" -v u="$(up)" 'BEGIN{printf "%d", b-u}')
  if [ "$left" -lt 20 ]; then emit "$name" fail "lab time budget exhausted (dom0 uptime $(up) s, budget $BUDGET s)"; continue; fi
  [ "$tmo" -le "$left" ] || tmo=$left
  say "=== SCENARIO $name (time limit ${tmo}s)"
  timeout -k 10 "$tmo" bash "$SELF" --one "$name" 2>&1 | tee "$OUT/$name.trace"
  rc=${PIPESTATUS[0]}
  if ! grep -q "^XLHA-SCENARIO $name " "$RES"; then
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then emit "$name" fail "timed out after ${tmo} s; last output: $(tailf "$OUT/$name.trace" 6)"
    else emit "$name" fail "scenario ended (status $rc) without a result; last output: $(tailf "$OUT/$name.trace" 6)"; fi
  fi
done
say "=== cleanup"
stop_daemon p; stop_daemon b
for d in $(xl list 2>/dev/null | awk 'NR>2{print $2}'); do timeout 60 xl destroy "$d" >/dev/null 2>&1; done
pkill -9 -f 'xl.*migrate-receive' 2>/dev/null
dmesg > "$OUT/dmesg.txt" 2>&1; cp -r /var/log/xen "$OUT/xen-logs" 2>/dev/null; cp -r /var/lib/xl-ha "$OUT/xl-ha-state" 2>/dev/null
say "XLHA-SCENARIOS-END"
