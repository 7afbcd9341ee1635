#!/usr/bin/env bash
# Smoke test of scripts/fleet-box, as root: up (twice: the second is a no-op), every host answers ssh as itself
# with its own /boot and /srv, ampere sleeps until woken (by fleet-box wake, or through the His stand-in's MCP
# wake-host), a changed host key is refused, up heals a broken box, down leaves nothing behind.
# Prints "N passed, N failed"; exits non-zero on any failure; tears the box down on every exit.
# Uses its own box dir (KA_BOX_SMOKE_DIR, default /tmp/ka-fleet-box-smoke). A missing tool is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
FB=$PWD/scripts/fleet-box
export KA_BOX_DIR=${KA_BOX_SMOKE_DIR:-/tmp/ka-fleet-box-smoke}
HOSTS=(boltzmann fermi hertz fresnel ohm ampere)
AWAKE=(boltzmann fermi hertz fresnel ohm)   # ampere is on demand: up leaves it asleep
passed=0
failed=0

pass() { passed=$((passed + 1)); printf 'ok   - %s\n' "$1"; }
fail() {
  failed=$((failed + 1)); printf 'FAIL - %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 20 | sed 's/^/       /'; fi
}
# check <name> <argv…>: passes when argv exits 0; shows its output otherwise.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
# eventually <seconds> <argv…>: polls argv until it exits 0 or the deadline passes.
eventually() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
finish() {
  local rc=$?
  trap - EXIT
  "$FB" down >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then fail "the test script itself stopped with exit $rc"; fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}
trap finish EXIT
trap 'fail "interrupted by a signal"; exit 130' INT TERM HUP
abort() { fail "$1" "${2:-}"; exit 1; }

ms_since() { awk -v a="$1" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
box_ssh() { ssh -F "$KA_BOX_SSH_CONFIG" "$@"; }
links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }
machine_snapshot() {
  echo "== links"; links
  echo "== netns"; ip netns list 2>/dev/null | sort
  echo "== /run/netns"; ls -A /run/netns 2>/dev/null || echo absent
  echo "== routes"; ip -4 route show | sort
  echo "== mounts under /tmp, /run/netns, /boot, /srv"; findmnt -rn -o TARGET | grep -E '^(/tmp|/run/netns|/boot|/srv)' | sort
  echo "== files"; ls -A / /boot /srv /home; sha256sum /etc/passwd /etc/group /etc/shadow
}

[ "$(id -u)" -eq 0 ] || abort "must run as root (namespaces, mounts)"
for t in ip ssh ssh-keygen /usr/sbin/sshd nsenter unshare findmnt awk sha256sum curl python3; do
  command -v "$t" >/dev/null || abort "required tool '$t' is missing" "run scripts/setup-box"
done
[ ! -e "$KA_BOX_DIR" ] || abort "$KA_BOX_DIR already exists" "KA_BOX_DIR=$KA_BOX_DIR $FB down"
baseline=$(machine_snapshot)

# ---- up, and up again
t0=${EPOCHREALTIME/,/.}
exports=$("$FB" up 2>/tmp/fleet-box-smoke.$$.err) || abort "fleet-box up" "$(cat /tmp/fleet-box-smoke.$$.err)"
up_ms=$(ms_since "$t0")
rm -f /tmp/fleet-box-smoke.$$.err
eval "$exports"
check "up prints KA_CONFIG, and it names a readable config" test -r "${KA_CONFIG:-/nonexistent}"
check "up prints KA_BOX_DIR=$KA_BOX_DIR" test "$KA_BOX_DIR" = "${KA_BOX_DIR:-}"
for h in "${HOSTS[@]}"; do
  check "ka.yaml names $h with an address, port 22 and user kbuild" \
    awk -v h="  $h:" '$0 ~ "^"h { f = 1; next } f && /^  [a-z]/ { exit } f && /address: 10\./ { a = 1 } f && /port: 22$/ { p = 1 } f && /user: kbuild$/ { u = 1 } END { exit !(a && p && u) }' "$KA_CONFIG"
done
pids_before=$(cat "$KA_BOX_DIR/state/pids")
t0=${EPOCHREALTIME/,/.}
exports2=$("$FB" up 2>/dev/null)
up2_ms=$(ms_since "$t0")
check "a second up prints the same exports" test "$exports" = "$exports2"
check "a second up is a no-op (same processes)" test "$pids_before" = "$(cat "$KA_BOX_DIR/state/pids")"
check "status: every host answers, ampere is asleep, the His stand-in runs" \
  bash -c "out=\$('$FB' status) && grep -q '^ampere .* asleep (on demand' <<<\"\$out\" && grep -q '^his .* running' <<<\"\$out\""

# ---- every host is itself
for h in "${AWAKE[@]}"; do
  out=$(box_ssh "$h" 'echo "$(hostname) $(id -un)"' 2>&1)
  if [ "$out" = "$h kbuild" ]; then pass "ssh $h answers as $h, user kbuild"; else fail "ssh $h answers as $h, user kbuild" "$out"; fi
done
# The config's address/port/user and ssh dir alone (no ssh_config alias) reach the host, as ka will use them.
addr=$(awk '/^  fresnel:/ { f = 1 } f && /address:/ { print $2; exit }' "$KA_CONFIG")
out=$(ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
  -o UserKnownHostsFile="$KA_BOX_DIR/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null -i "$KA_BOX_DIR/ssh/id_ed25519" \
  -p 22 "kbuild@$addr" hostname 2>&1)
if [ "$out" = fresnel ]; then pass "ssh -F none with ka.yaml's address ($addr) and the box's key/known_hosts reaches fresnel"; else fail "ssh -F none to fresnel's address" "$out"; fi
check "root login is refused" bash -c "! ssh -F '$KA_BOX_SSH_CONFIG' root@fresnel true"

# ---- no host sees another's files
"$FB" exec fresnel sh -c 'echo fresnel-boot > /boot/smoke-marker'
check "fresnel sees its /boot marker over ssh" test "$(box_ssh fresnel cat /boot/smoke-marker 2>&1)" = fresnel-boot
check "the marker is in fresnel's per-host dir" test -f "$KA_BOX_DIR/hosts/fresnel/fs/boot/smoke-marker"
for h in boltzmann fermi hertz ohm; do
  check "$h does not see fresnel's /boot marker" box_ssh "$h" test ! -e /boot/smoke-marker
done
check "the machine's /boot does not see it" test ! -e /boot/smoke-marker
check "kbuild writes ohm's /srv/kernel-agent" box_ssh ohm 'echo ohm > /srv/kernel-agent/smoke-marker'
check "fresnel does not see ohm's /srv/kernel-agent marker" box_ssh fresnel test ! -e /srv/kernel-agent/smoke-marker
for h in "${HOSTS[@]}"; do
  for p in /boot /srv /var/lib/pacman /etc/kernel-agent; do
    src=$("$FB" exec "$h" findmnt -n -o SOURCE --target "$p" 2>&1)
    case "$src" in
      *"[$KA_BOX_DIR/hosts/$h/fs$p]") pass "$h: $p is a bind mount of its per-host dir" ;;
      *"[$KA_BOX_DIR/hosts/$h/fs/srv]") pass "$h: $p is under the bind mount of its per-host /srv" ;;
      *) fail "$h: $p is a bind mount of its per-host dir" "$src" ;;
    esac
  done
done
check "hertz: kbuild writes /sparfuxdata and /srv/packages" box_ssh hertz 'install -d /sparfuxdata/kernel-agent-backups && touch /srv/packages/x'
check "fresnel has no /sparfuxdata" box_ssh fresnel test ! -e /sparfuxdata
check "a host writes its own /etc (overlay), the machine's /etc is untouched" \
  bash -c "'$FB' exec fresnel sh -c 'echo x > /etc/smoke-marker' && test ! -e /etc/smoke-marker && '$FB' exec ohm test ! -e /etc/smoke-marker"
check "a host sees only its own processes (one sshd listener)" \
  test "$("$FB" exec fresnel ps -e -o comm= | grep -c '^sshd$')" = 1
check "hosts have no default route (traffic stays in the box)" test -z "$("$FB" exec fresnel ip route show default)"
check "boltzmann reaches hertz's sshd by name" "$FB" exec boltzmann bash -c 'exec 3<>/dev/tcp/hertz/22'
exec_argv_exact() {
  local out
  out=$("$FB" exec ohm printf '%s|' 'a b' "it's" '$(x)' ';' '') || return 1
  [ "$out" = "a b|it's|\$(x)|;||" ] || { echo "got: $out"; return 1; }
  "$FB" exec ohm sh -c 'exit 7'
  [ $? -eq 7 ] || { echo "exit code not passed through"; return 1; }
}
check "exec passes argv byte-exact and returns the exit code" exec_argv_exact
check "no mount of the box is visible on the machine" bash -c "! findmnt -rn -o TARGET,SOURCE | grep -F '$KA_BOX_DIR'"

# ---- the tools of each role (issues 8 and 9; Tests/box/pipeline.sh drives them end to end)
fpr=$(awk '/^  key: / { print $2 }' "$KA_CONFIG")
check "ka.yaml names a 40-hex signing key and the baseline mirror's pinned tarball" \
  bash -c "[[ '$fpr' =~ ^[0-9A-F]{40}$ ]] && [ \"\$(b2sum < \"\$(awk '/^  mirror: / { print \$2 }' '$KA_CONFIG')/linux-7.0.tar.xz\" | cut -d' ' -f1)\" = \"\$(awk '/^  b2sum: / { print \$2 }' '$KA_CONFIG')\" ]"
check "hertz holds that key (in /srv/kernel-agent/gnupg, not in \$HOME)" \
  bash -c "ssh -F '$KA_BOX_SSH_CONFIG' hertz 'GNUPGHOME=/srv/kernel-agent/gnupg gpg --batch --list-secret-keys --with-colons' | grep -q '^fpr:::::::::$fpr:'"
for h in boltzmann fermi; do
  check "$h: makepkg builds for aarch64 with ccache; pacman says the makedepends are installed" \
    box_ssh "$h" 'grep -qx "CARCH=\"aarch64\"" /etc/makepkg.conf && test -x /usr/lib/ccache/bin/gcc && pacman -T bc dtc inetutils kmod python >/dev/null && test -O /srv/kernel-agent/ccache'
done
for h in fresnel ohm; do
  check "$h: trusts the repo key, runs its stock kernel (uname -r = /boot/Image's release), no reboot yet, a narrow sudo" \
    box_ssh "$h" "pacman-key --list-keys $fpr >/dev/null 2>&1 && [ \"\$(uname -r)\" = \"\$(sed -n 's/^kernelrelease: //p' /boot/Image)\" ] && [ \"\$(cat /var/lib/fleet-box/reboot-count)\" = 0 ] && ! sudo -n true 2>/dev/null && grep -q '^LABEL ' /boot/extlinux/extlinux.conf"
done

# ---- ampere, on demand: asleep until woken; His (the MCP stand-in) wakes it
his_url=$(awk '/^his:/ { f = 1 } f && /^  url: / { print $2; exit }' "$KA_CONFIG")
check "ka.yaml's his: names the stand-in on 127.0.0.1 and its token variable; up exports the token" \
  bash -c "[[ '$his_url' =~ ^http://127\.0\.0\.1:[0-9]+/mcp$ ]] && grep -q '^  token_env: KA_BOX_HIS_TOKEN$' '$KA_CONFIG' && [ -n \"\${KA_BOX_HIS_TOKEN:-}\" ] && [ \"\$KA_BOX_HIS_TOKEN\" = \"\$(cat '$KA_BOX_DIR/his/token')\" ]"
ampere_refuses() { local out; out=$(box_ssh ampere true 2>&1) && return 1; [[ "$out" == *"Connection refused"* ]]; }
check "asleep ampere refuses ssh (its sshd is not started), yet its pid 1 runs" bash -c "$(declare -f box_ssh ampere_refuses); ampere_refuses && '$FB' exec ampere true"
mcp_headers=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-06-18')
init_body='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"1"}}}'
check "the stand-in refuses a request without the Bearer token (401)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "${mcp_headers[@]}" "$his_url" -d "$init_body")" = 401
# his_call <tool> <host>: one MCP session (initialize, initialized, tools/call) with the token; prints the tool's text.
his_call() {
  local sid auth=(-H "Authorization: Bearer $KA_BOX_HIS_TOKEN")
  sid=$(curl -sf -D - -o /dev/null "${mcp_headers[@]}" "${auth[@]}" "$his_url" -d "$init_body" |
    awk -F': ' 'tolower($1) == "mcp-session-id" { print $2 }' | tr -d '\r') || return 1
  curl -sf -o /dev/null "${mcp_headers[@]}" "${auth[@]}" -H "Mcp-Session-Id: $sid" "$his_url" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}' || return 1
  curl -sf "${mcp_headers[@]}" "${auth[@]}" -H "Mcp-Session-Id: $sid" "$his_url" \
    -d "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"$1\",\"arguments\":{\"host\":\"$2\"}}}" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["result"]; print(("ERROR: " if r.get("isError") else "") + r["content"][0]["text"])'
}
out=$(his_call host-status ampere 2>&1)
if [ "$out" = asleep ]; then pass "His: host-status ampere = asleep"; else fail "His: host-status ampere = asleep" "$out"; fi
out=$(his_call host-status fresnel 2>&1)
if [ "$out" = up ]; then pass "His: host-status fresnel = up"; else fail "His: host-status fresnel = up" "$out"; fi
t0=${EPOCHREALTIME/,/.}
out=$(his_call wake-host ampere 2>&1)
if [[ "$out" == "waking ampere"* ]]; then pass "His: wake-host ampere answers at once ($out)"; else fail "His: wake-host ampere answers at once" "$out"; fi
ampere_answers() { [ "$(box_ssh ampere 'echo "$(hostname) $(id -un)"' 2>/dev/null)" = "ampere kbuild" ]; }
if eventually 20 ampere_answers; then pass "after His's wake-host, ampere answers ssh as ampere, user kbuild ($(ms_since "$t0") ms)"; else fail "after His's wake-host, ampere answers ssh" "$(box_ssh ampere true 2>&1)"; fi
out=$(his_call host-status ampere 2>&1)
if [ "$out" = up ]; then pass "His: host-status ampere = up"; else fail "His: host-status ampere = up" "$out"; fi
check "the stand-in logged each tool call" bash -c "[ \"\$(grep -c '\"wake-host\", \"host\": \"ampere\"' '$KA_BOX_DIR/his/calls.log')\" = 1 ]"
out=$(his_call wake-host ampere 2>&1)
check "a second wake is a no-op (His: '$out'; fleet-box wake: still one sshd)" \
  bash -c "[ '$out' = 'ampere is up' ] && '$FB' wake ampere 2>/dev/null && [ \"\$('$FB' exec ampere pgrep -c -x sshd)\" = 1 ]"
check "ampere: a build host like boltzmann (makepkg for aarch64, ccache, /srv/kernel-agent owned by kbuild)" \
  box_ssh ampere 'grep -qx "CARCH=\"aarch64\"" /etc/makepkg.conf && test -x /usr/lib/ccache/bin/gcc && pacman -T bc dtc >/dev/null && test -O /srv/kernel-agent/ccache && test -O /srv/kernel-agent/keep && [ "$(uname -m)" = aarch64 ]'
box_ssh ampere 'sleep 600' </dev/null >/dev/null 2>&1 &
session=$!
eventually 5 bash -c "[ \"\$('$FB' exec ampere pgrep -c -u kbuild -x sleep)\" = 1 ]"
check "fleet-box sleep ampere succeeds" "$FB" sleep ampere
if eventually 5 bash -c "! kill -0 $session 2>/dev/null"; then pass "sleep ended ampere's open ssh session"; else fail "sleep ended ampere's open ssh session"; kill "$session" 2>/dev/null; fi
check "ampere asleep again: ssh refused, no sshd nor kbuild process left, status says asleep" \
  bash -c "$(declare -f box_ssh ampere_refuses); ampere_refuses && ! '$FB' exec ampere pgrep -x sshd && ! '$FB' exec ampere pgrep -u kbuild && '$FB' status | grep -q '^ampere .* asleep'"
check "a second sleep is a no-op" "$FB" sleep ampere
check "fleet-box wake ampere starts its sshd directly" bash -c "'$FB' wake ampere 2>/dev/null && $(declare -f box_ssh); box_ssh ampere true"
check "up leaves a box with ampere awake alone" bash -c "p=\$(cat '$KA_BOX_DIR/state/pids') && '$FB' up >/dev/null 2>&1 && [ \"\$p\" = \"\$(cat '$KA_BOX_DIR/state/pids')\" ]"
"$FB" sleep ampere 2>/dev/null

# ---- a changed host key is refused
"$FB" rekey fresnel >/dev/null
refused() {
  local out
  if out=$(box_ssh fresnel true 2>&1); then return 1; fi
  [[ "$out" == *"Host key verification failed"* ]]
}
if eventually 15 refused; then pass "after rekey, ssh to fresnel is refused: Host key verification failed"; else fail "after rekey, ssh to fresnel is refused" "$(box_ssh fresnel true 2>&1)"; fi
check "ohm still answers" box_ssh ohm true
check "status reports fresnel as not answering" bash -c "! '$FB' status | grep -q '^fresnel .* answers$'"

# ---- up heals a broken box with a clean restart
old_pids=$(cat "$KA_BOX_DIR/state/pids")
if "$FB" up >/dev/null 2>&1; then pass "up on a broken box (rekeyed host) succeeds"; else fail "up on a broken box (rekeyed host) succeeds"; fi
check "after the restart fresnel answers again" box_ssh fresnel true
check "the restart is clean: fresnel's /boot marker is gone" box_ssh fresnel test ! -e /boot/smoke-marker
still=""
while read -r host role pid st; do
  if [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$st" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat")" != Z ]; then still+=" $host/$role/$pid"; fi
done <<<"$old_pids"
check "the restart ended every process of the old box" test -z "$still"

# ---- down leaves nothing
his_port=$(awk '/^his:/ { f = 1 } f && /^  url: / { sub(/^http:\/\/127\.0\.0\.1:/, "", $2); sub(/\/mcp$/, "", $2); print $2; exit }' "$KA_CONFIG")
box_pids=$(awk '{ print $3 ":" $4 }' "$KA_BOX_DIR/state/pids")
for h in "${HOSTS[@]}"; do
  for pid in $(ip netns pids "kbx-$h"); do box_pids+=$'\n'"$pid:$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)"; done
done
ns_ids=$(for pid in $(awk '$2 == "init" { print $3 }' "$KA_BOX_DIR/state/pids"); do readlink "/proc/$pid/ns/"{net,mnt,uts,pid}; done)
t0=${EPOCHREALTIME/,/.}
if "$FB" down 2>/dev/null; then pass "down succeeds"; else fail "down succeeds"; fi
down_ms=$(ms_since "$t0")
check "no box namespace remains" bash -c "! ip netns list | grep -q '^kbx-'"
check "no box link remains" bash -c "! ip -o link show | grep -q ': kbx-'"
check "the box dir is gone" test ! -e "$KA_BOX_DIR"
still=""
while IFS=: read -r pid st; do
  [ -n "$pid" ] || continue
  if [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$st" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat")" != Z ]; then still+=" $pid"; fi
done <<<"$box_pids"
check "no process of the box remains (by pid and start time; the His stand-in included)" test -z "$still"
check "nothing listens on the stand-in's port any more" bash -c "[[ '$his_port' =~ ^[0-9]+$ ]] && ! (exec 3<>/dev/tcp/127.0.0.1/$his_port) 2>/dev/null"
in_ns=$(for p in /proc/[0-9]*; do for n in net mnt uts pid; do readlink "$p/ns/$n" 2>/dev/null; done; done | grep -Fx -f <(printf '%s\n' "$ns_ids") || true)
check "no process is left in a namespace of the box" test -z "$in_ns"
after=$(machine_snapshot)
if [ "$after" = "$baseline" ]; then pass "the machine's links, namespaces, routes, mounts and files are as before"; else fail "the machine is as before" "$(diff <(echo "$baseline") <(echo "$after"))"; fi
check "a second down is a no-op" "$FB" down
check "exec on a box that is down fails" bash -c "! '$FB' exec fresnel true"

echo "# timings: up ${up_ms} ms, second (no-op) up ${up2_ms} ms, down ${down_ms} ms"
