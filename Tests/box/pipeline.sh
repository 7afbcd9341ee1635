#!/usr/bin/env bash
# End-to-end proof of the build -> sign -> publish -> install -> reboot pipeline on the fleet-in-a-box, by hand:
# the raw commands that `ka build` and `ka install` will later drive (issues 8 and 9), each one timed. These are
# the "by hand" baselines their benchmarks compare against.
#
#   box up -> scripts/make-mini-kernel -> scripts/render-pkgbuild (fresnel, fresnel-fourier, the shipped
#   board/pinebook-pro patches as cumulative.patch) -> scp to boltzmann -> makepkg as kbuild (cold ccache)
#   -> makepkg again in a new job dir (warm ccache) -> scp -3 to hertz's staging -> gpg --detach-sign
#   -> repo-add -s -k <fpr> -v -> gpg --verify of the db -> scp -3 hertz -> fresnel -> pacman-key --verify
#   -> sudo pacman -U -> fdtget: the 1.704 GHz OPP -> extlinux.conf managed block (stock entry kept)
#   -> sudo reboot -> ssh heartbeat with a new boot id -> uname -r = 7.0.0-fresnel-fourier
#
# Run as root (the box needs it). Prints "N passed, N failed" and a timing table (also as TSV to
# $KA_PIPELINE_TIMINGS when set); tears the box down on every exit. Uses its own box dir
# (KA_BOX_PIPELINE_DIR, default /tmp/ka-fleet-box-pipeline). A missing tool is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
FB=$ROOT/scripts/fleet-box
export KA_BOX_DIR=${KA_BOX_PIPELINE_DIR:-/tmp/ka-fleet-box-pipeline}
WORK=$(mktemp -d /tmp/ka-pipeline.XXXXXX)
HOST=fresnel
SUFFIX=fresnel-fourier
PKGBASE=linux-$SUFFIX
RELEASE=7.0.0-$SUFFIX
PKG=$PKGBASE-7.0-1-aarch64.pkg.tar.zst
HDR_PKG=$PKGBASE-headers-7.0-1-aarch64.pkg.tar.zst
BUILD_HOST=boltzmann
SIGN_HOST=hertz
DTB=rockchip/rk3399-pinebook-pro.dtb
OPP_NODE=/opp-table-0/opp-1704000000
passed=0
failed=0
timings=()

pass() { passed=$((passed + 1)); printf 'ok   - %s\n' "$1"; }
fail() {
  failed=$((failed + 1)); printf 'FAIL - %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | tail -n 25 | sed 's/^/       /'; fi
}
check() {  # <name> <argv…>: passes when argv exits 0
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
# step <name> <argv…>: a timed raw step; its output goes to $WORK/logs/<name>.log. A failed step ends the run
# (the steps after it need its result).
step() {
  local name=$1 t0 rc ms
  shift
  t0=$(now)
  "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  ms=$(ms_since "$t0")
  timings+=("$name	$ms")
  if [ "$rc" -eq 0 ]; then pass "$name ($ms ms)"; else abort "$name (exit $rc)" "$(tail -n 25 "$WORK/logs/$name.log")"; fi
}
finish() {
  local rc=$? t0
  trap - EXIT
  t0=$(now)
  "$FB" down >/dev/null 2>&1 || true
  timings+=("box down	$(ms_since "$t0")")
  rm -rf "$WORK"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then fail "the test script itself stopped with exit $rc"; fi
  if [ ${#timings[@]} -gt 0 ]; then
    echo "# timings (ms), raw steps by hand:"
    printf '%s\n' "${timings[@]}" | awk -F'\t' '{ printf "#   %-52s %8d\n", $1, $2 }'
    if [ -n "${KA_PIPELINE_TIMINGS:-}" ]; then printf 'step\tms\n%s\n' "$(printf '%s\n' "${timings[@]}")" >"$KA_PIPELINE_TIMINGS"; fi
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}
trap finish EXIT
trap 'fail "interrupted by a signal"; exit 130' INT TERM HUP
abort() { fail "$1" "${2:-}"; exit 1; }

mkdir -p "$WORK/logs"
[ "$(id -u)" -eq 0 ] || abort "must run as root (the box needs namespaces and mounts)"
for t in ip ssh scp nsenter python3 b2sum bsdtar fdtget awk; do
  command -v "$t" >/dev/null || abort "required tool '$t' is missing" "run scripts/setup-box"
done
[ ! -e "$KA_BOX_DIR" ] || abort "$KA_BOX_DIR already exists" "KA_BOX_DIR=$KA_BOX_DIR $FB down"

box_ssh() { ssh -F "$KA_BOX_DIR/ssh/ssh_config" "$@"; }
box_scp() { scp -q -F "$KA_BOX_DIR/ssh/ssh_config" "$@"; }

# ---- the box, the baseline, the package sources
up() {
  "$FB" up >"$WORK/exports"
}
step "box up" up
eval "$(cat "$WORK/exports")"
FPR=$(awk '/^  key: / { print $2 }' "$KA_CONFIG")
MIRROR=$(awk '/^  mirror: / { print $2 }' "$KA_CONFIG")
check "ka.yaml names the signing key (40 hex digits)" bash -c "[[ '$FPR' =~ ^[0-9A-F]{40}$ ]]"

step "make-mini-kernel" "$ROOT/scripts/make-mini-kernel" --quiet "$WORK/mini"
check "the tarball is reproducible: the box mirror's linux-7.0.tar.xz has the same b2sum" \
  cmp "$WORK/mini/b2sums" "$MIRROR/b2sums"
check "the tarball's top dir is linux-7.0/" bash -c "bsdtar -tf '$WORK/mini/linux-7.0.tar.xz' | awk -F/ '{ print \$1 }' | sort -u | grep -qx linux-7.0"

cat "$ROOT"/patches/board/pinebook-pro/*.patch >"$WORK/cumulative.patch"
step "render PKGBUILD" "$ROOT/scripts/render-pkgbuild" --host "$HOST" --suffix "$SUFFIX" \
  --tarball "$WORK/mini/linux-7.0.tar.xz" --patch "$WORK/cumulative.patch" \
  --config "$ROOT/fleet/config/$HOST.config" --out "$WORK/job1"
check "the rendered PKGBUILD has no placeholder left" bash -c "! grep -n '@@' '$WORK/job1/PKGBUILD'"
check "the rendered hook watches boot/Image-<suffix> and runs mkinitcpio -p <pkgbase>" \
  bash -c "grep -qx 'Target = boot/Image-%SUFFIX%' '$WORK/job1/linux.hook' && grep -qx 'Exec = /usr/bin/mkinitcpio -p %PKGBASE%' '$WORK/job1/linux.hook'"
check "alongside install: no provides or conflicts" bash -c "grep -q '^  provides=()$' '$WORK/job1/PKGBUILD' && ! grep -Eq '^  (provides|conflicts)=\\(.+\\)' '$WORK/job1/PKGBUILD'"
EXPECTED_PATCHSET=$("$ROOT/scripts/make-mini-kernel" --patchset-of "$WORK/cumulative.patch" "$WORK/mini/linux-7.0.tar.xz")

# ---- build on boltzmann as the build user
check "$BUILD_HOST: the build user is not root" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $BUILD_HOST id -u)\" != 0 ]"
box_ssh "$BUILD_HOST" 'mkdir -p /srv/kernel-agent/source/job1 /srv/kernel-agent/source/job2 /srv/kernel-agent/output/job1 /srv/kernel-agent/output/job2' ||
  abort "make the job dirs on $BUILD_HOST"
step "scp sources to $BUILD_HOST" box_scp "$WORK/job1/"* "$BUILD_HOST:/srv/kernel-agent/source/job1/"
ccache_stats() {  # <host>: "hits misses" since the last ccache -z
  box_ssh "$1" 'ccache --print-stats' | awk -F'\t' '$1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { h += $2 } $1 == "cache_miss" { m = $2 } END { printf "%d %d", h, m }'
}
makepkg_job() {  # <job>
  box_ssh "$BUILD_HOST" "ccache -z >/dev/null && cd /srv/kernel-agent/source/$1 && PKGDEST=/srv/kernel-agent/output/$1 makepkg --noconfirm --noprogressbar"
}
step "makepkg (cold ccache)" makepkg_job job1
read -r hits1 misses1 <<<"$(ccache_stats "$BUILD_HOST")"
check "the cold build compiled through ccache ($misses1 misses, $hits1 hits)" test "$misses1" -gt 0
check "the cold build wrote $PKG and $HDR_PKG to output/job1" \
  box_ssh "$BUILD_HOST" "test -s /srv/kernel-agent/output/job1/$PKG && test -s /srv/kernel-agent/output/job1/$HDR_PKG"
check "prepare() ran make olddefconfig on the config" grep -q '^# configuration written to .config' "$WORK/logs/makepkg (cold ccache).log"
box_ssh "$BUILD_HOST" 'cp /srv/kernel-agent/source/job1/{PKGBUILD,linux-7.0.tar.xz,cumulative.patch,config,linux.preset,linux.hook,linux-fresnel-fourier.install} /srv/kernel-agent/source/job2/' ||
  abort "copy the sources to job2"
step "makepkg (warm ccache)" makepkg_job job2
read -r hits2 misses2 <<<"$(ccache_stats "$BUILD_HOST")"
check "the warm build hit ccache ($hits2 hits, $misses2 misses)" test "$hits2" -gt 0

# ---- the package itself, before it leaves the build host
box_scp "$BUILD_HOST:/srv/kernel-agent/output/job1/$PKG" "$WORK/$PKG" || abort "fetch $PKG for inspection"
mkdir -p "$WORK/pkg"
bsdtar -xf "$WORK/$PKG" -C "$WORK/pkg" || abort "unpack $PKG"
check "the package has /boot/Image-$SUFFIX with kernelrelease $RELEASE" grep -qx "kernelrelease: $RELEASE" "$WORK/pkg/boot/Image-$SUFFIX"
check "the Image records the applied patch set ($EXPECTED_PATCHSET)" grep -qx "patchset: $EXPECTED_PATCHSET" "$WORK/pkg/boot/Image-$SUFFIX"
check "the package's $DTB has the board patch's 1.704 GHz OPP" \
  bash -c "[ \"\$(fdtget '$WORK/pkg/boot/dtbs-$SUFFIX/$DTB' $OPP_NODE opp-hz)\" = '0 1704000000' ]"
check "the package ships the preset and the alpm hook for its own Image" \
  bash -c "grep -q '^default_image=\"/boot/initramfs-$SUFFIX.img\"' '$WORK/pkg/etc/mkinitcpio.d/$PKGBASE.preset' && grep -qx 'Target = boot/Image-$SUFFIX' '$WORK/pkg/usr/share/libalpm/hooks/90-$PKGBASE.hook'"
check "the package's .PKGINFO has no provides, conflicts or replaces" bash -c "! grep -Eq '^(provides|conflict|replaces) = ' '$WORK/pkg/.PKGINFO'"
check "the headers package links /usr/src/$PKGBASE to the build dir" \
  bash -c "bsdtar -tvf <(ssh -F '$KA_BOX_SSH_CONFIG' $BUILD_HOST cat /srv/kernel-agent/output/job1/$HDR_PKG) | grep -q 'usr/src/$PKGBASE -> ../lib/modules/$RELEASE/build'"

# ---- sign and publish on hertz (the build host never holds the key)
check "$BUILD_HOST has no secret key" bash -c "! ssh -F '$KA_BOX_SSH_CONFIG' $BUILD_HOST 'gpg --batch --list-secret-keys 2>/dev/null | grep -q .'"
box_ssh "$SIGN_HOST" 'mkdir -p /srv/kernel-agent/staging/job1' || abort "make the staging dir on $SIGN_HOST"
step "scp -3 packages $BUILD_HOST -> $SIGN_HOST staging" \
  box_scp -3 "$BUILD_HOST:/srv/kernel-agent/output/job1/*.pkg.tar.zst" "$SIGN_HOST:/srv/kernel-agent/staging/job1/"
check "staging has the b2sums the build host reported" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $BUILD_HOST 'cd /srv/kernel-agent/output/job1 && b2sum *.pkg.tar.zst')\" = \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $SIGN_HOST 'cd /srv/kernel-agent/staging/job1 && b2sum *.pkg.tar.zst')\" ]"
step "gpg --detach-sign (binary)" box_ssh "$SIGN_HOST" "set -e; export GNUPGHOME=/srv/kernel-agent/gnupg; cd /srv/kernel-agent/staging/job1
  for p in *.pkg.tar.zst; do gpg --batch --yes --detach-sign --no-armor --local-user $FPR \"\$p\"; done"
step "repo-add -s -k <fpr> -v" box_ssh "$SIGN_HOST" "set -e; export GNUPGHOME=/srv/kernel-agent/gnupg
  cp /srv/kernel-agent/staging/job1/*.pkg.tar.zst /srv/kernel-agent/staging/job1/*.sig /srv/packages/arch/aarch64/
  cd /srv/packages/arch/aarch64 && repo-add -s -k $FPR -v marfrit.db.tar.zst $PKG $HDR_PKG"
step "gpg --verify of the repo db" box_ssh "$SIGN_HOST" \
  'GNUPGHOME=/srv/kernel-agent/gnupg gpg --batch --verify /srv/packages/arch/aarch64/marfrit.db.tar.zst.sig /srv/packages/arch/aarch64/marfrit.db.tar.zst'
check "the db is signed by the configured key" grep -q "using EDDSA key $FPR" "$WORK/logs/gpg --verify of the repo db.log"
check "the published repo answers over HTTP on the LAN" \
  box_ssh "$HOST" "curl -fsS -o /dev/null http://$SIGN_HOST:8080/arch/aarch64/marfrit.db.tar.zst"

# ---- install on fresnel
box_scp "$HOST:/boot/extlinux/extlinux.conf" "$WORK/extlinux.stock" || abort "fetch $HOST's extlinux.conf"
check "$HOST boots its stock kernel before the install" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST uname -r)\" = 6.19.10-1-eos-arm ]"
check "$HOST's stock device tree lacks the OC OPP" bash -c "! ssh -F '$KA_BOX_SSH_CONFIG' $HOST fdtget /boot/dtbs/$DTB $OPP_NODE opp-hz"
step "scp -3 package $SIGN_HOST -> $HOST (LAN)" \
  box_scp -3 "$SIGN_HOST:/srv/packages/arch/aarch64/$PKG" "$SIGN_HOST:/srv/packages/arch/aarch64/$PKG.sig" "$HOST:/tmp/"
step "pacman-key --verify on $HOST" box_ssh "$HOST" "sudo -n pacman-key --verify /tmp/$PKG.sig /tmp/$PKG"
step "sudo pacman -U on $HOST" box_ssh "$HOST" "sudo -n pacman -U --noconfirm --noprogressbar /tmp/$PKG"
check "pacman -Q shows $PKGBASE 7.0-1" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST pacman -Q $PKGBASE 2>/dev/null)\" = '$PKGBASE 7.0-1' ]"
check "the package's alpm hook made /boot/initramfs-$SUFFIX.img" grep -q "Creating zstd-compressed initcpio image: '/boot/initramfs-$SUFFIX.img'" "$WORK/logs/sudo pacman -U on $HOST.log"
check "the installed $DTB has the 1.704 GHz OPP (fdtget on $HOST)" \
  bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST fdtget /boot/dtbs-$SUFFIX/$DTB $OPP_NODE opp-hz)\" = '0 1704000000' ]"
check "the stock kernel's files are untouched (alongside)" box_ssh "$HOST" \
  'test -s /boot/Image && test -s /boot/initramfs-linux.img && test -s /boot/dtbs/rockchip/rk3399-pinebook-pro.dtb && pacman -Q linux-eos-arm'
check "extlinux.conf is unchanged by pacman -U (the package does not touch it)" \
  bash -c "ssh -F '$KA_BOX_SSH_CONFIG' $HOST cat /boot/extlinux/extlinux.conf | cmp - '$WORK/extlinux.stock'"
check "the privilege rule is narrow: sudo -n true is refused" bash -c "! ssh -F '$KA_BOX_SSH_CONFIG' $HOST sudo -n true"

write_extlinux() {
  box_ssh "$HOST" "set -e; cp /boot/extlinux/extlinux.conf /tmp/extlinux.conf.new
    cat >>/tmp/extlinux.conf.new <<'EOF'

# >>> $PKGBASE (managed) >>>
DEFAULT $SUFFIX
LABEL $SUFFIX
    MENU LABEL $PKGBASE 7.0-1 (kernel-agent)
    LINUX /Image-$SUFFIX
    INITRD /initramfs-$SUFFIX.img
    FDT /dtbs-$SUFFIX/$DTB
    APPEND root=PARTLABEL=root rw rootwait console=ttyS2,1500000 console=tty1
# <<< $PKGBASE (managed) <<<
EOF
    sudo -n install -m 0644 -T /tmp/extlinux.conf.new /boot/extlinux/extlinux.conf.ka-new
    sudo -n mv -f -T /boot/extlinux/extlinux.conf.ka-new /boot/extlinux/extlinux.conf"
}
step "write extlinux.conf (managed block, temp + rename)" write_extlinux
box_scp "$HOST:/boot/extlinux/extlinux.conf" "$WORK/extlinux.new" || abort "fetch the new extlinux.conf"
check "the stock entry stays byte for byte: the new extlinux.conf starts with the stock one" \
  cmp -n "$(stat -c %s "$WORK/extlinux.stock")" "$WORK/extlinux.stock" "$WORK/extlinux.new"
check "what follows it is only the managed block, delimited by >>> / <<< $PKGBASE (managed)" \
  bash -c "tail -c +\$((\$(stat -c %s '$WORK/extlinux.stock') + 1)) '$WORK/extlinux.new' | sed '/^\$/d' | sed -n '1p;\$p' | tr '\n' '|' | grep -qx '# >>> $PKGBASE (managed) >>>|# <<< $PKGBASE (managed) <<<|'"

# ---- reboot and heartbeat
boot_id=$(box_ssh "$HOST" cat /var/lib/fleet-box/boot-id) || abort "read $HOST's boot id"
count_before=$(box_ssh "$HOST" cat /var/lib/fleet-box/reboot-count)
heartbeat() {  # until ssh answers with another boot id (60 s)
  local deadline=$(( $(date +%s) + 60 )) id
  while :; do
    id=$(box_ssh -o ConnectTimeout=1 "$HOST" cat /var/lib/fleet-box/boot-id 2>/dev/null) && [ -n "$id" ] && [ "$id" != "$boot_id" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no heartbeat with a new boot id after 60 s"; return 1; }
    sleep 0.1
  done
}
reboot_and_wait() {
  box_ssh "$HOST" sudo -n reboot || return 1
  heartbeat
}
step "sudo reboot -> ssh heartbeat" reboot_and_wait
check "uname -r on $HOST shows $RELEASE" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST uname -r)\" = '$RELEASE' ]"
check "the reboot counter went up by one" bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST cat /var/lib/fleet-box/reboot-count)\" = $((count_before + 1)) ]"
check "$HOST booted the device tree with the 1.704 GHz OPP" \
  bash -c "[ \"\$(ssh -F '$KA_BOX_SSH_CONFIG' $HOST fdtget /var/lib/fleet-box/booted-fdt.dtb $OPP_NODE opp-hz)\" = '0 1704000000' ]"
check "extlinux.conf still has the stock entry after the reboot" \
  bash -c "ssh -F '$KA_BOX_SSH_CONFIG' $HOST cat /boot/extlinux/extlinux.conf | grep -qx 'LABEL eos-arm'"
