#!/usr/bin/env bash
# Tests of the packaging substrate without the box: scripts/make-mini-kernel (the tree speaks kbuild's interface,
# the tarball is reproducible, the board patch lands in the DTB, the Image records the patch set) and
# scripts/render-pkgbuild (placeholders, refusals, install modes), and packaging/debian/build end to end.
# Any user; no network, no root needed (makepkg itself is exercised on the box: Tests/box/pipeline.sh).
# Prints "N passed, N failed"; a missing tool is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/ka-mini-kernel-test.XXXXXX)
MMK=$ROOT/scripts/make-mini-kernel
RENDER=$ROOT/scripts/render-pkgbuild
passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok   - %s\n' "$1"; }
fail() {
  failed=$((failed + 1)); printf 'FAIL - %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | tail -n 20 | sed 's/^/       /'; fi
}
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
refuses() {  # <name> <expected stderr text> <argv…>: argv fails and says the text
  local name=$1 want=$2 out
  shift 2
  if out=$("$@" 2>&1); then fail "$name" "exit 0: $out"; elif [[ $out == *"$want"* ]]; then pass "$name"; else fail "$name" "$out"; fi
}
finish() {
  local rc=$?
  trap - EXIT
  rm -rf "$WORK"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then fail "the test script itself stopped with exit $rc"; fi
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}
trap finish EXIT
abort() { fail "$1" "${2:-}"; exit 1; }
for t in python3 make gcc cpp ld nm dtc fdtget patch b2sum bsdtar modinfo depmod dpkg-deb; do
  command -v "$t" >/dev/null || abort "required tool '$t' is missing" "run scripts/setup-box (as root)"
done

# ---- the tarball
"$MMK" --quiet "$WORK/a" >"$WORK/a.out" 2>&1 || abort "make-mini-kernel" "$(cat "$WORK/a.out")"
"$MMK" --quiet "$WORK/b" >/dev/null 2>&1 || abort "make-mini-kernel (second run)"
check "two runs give the same tarball bytes" cmp "$WORK/a/linux-7.0.tar.xz" "$WORK/b/linux-7.0.tar.xz"
check "stdout and b2sums name the tarball's b2sum" \
  bash -c "[ \"\$(cat '$WORK/a.out')\" = \"\$(b2sum '$WORK/a/linux-7.0.tar.xz' | sed 's|  .*/|  |')\" ] && cmp '$WORK/a.out' '$WORK/a/b2sums'"
check "every entry is under linux-7.0/" bash -c "bsdtar -tf '$WORK/a/linux-7.0.tar.xz' | awk -F/ '\$1 != \"linux-7.0\" { bad = 1 } END { exit bad }'"
check "every entry is root's, 0644 or 0755 (or a symlink)" bash -c "bsdtar -tvf '$WORK/a/linux-7.0.tar.xz' |
  awk '\$3 != \"root\" || \$4 != \"root\" || \$1 !~ /^(-rw-r--r--|-rwxr-xr-x|drwxr-xr-x|lrwxrwxrwx)\$/ { bad = 1 } END { exit bad }'"
check "the fixture's files are in the tree, byte for byte" \
  cmp "$ROOT/../shared/fixtures/linux-v7.0-dts/arch/arm64/boot/dts/rockchip/rk3588-rock-5-itx.dts" "$WORK/a/linux-7.0/arch/arm64/boot/dts/rockchip/rk3588-rock-5-itx.dts"
check "the dtb list has the fleet's boards and leaves out those that need arch/arm" \
  bash -c "m='$WORK/a/linux-7.0/arch/arm64/boot/dts/rockchip/Makefile'; for b in rk3399-pinebook-pro rk3588-rock-5-itx rk3588-coolpi-cm5-genbook rk3566-pinenote-v1.2; do grep -qx \"dtb-\\\$(CONFIG_ARCH_ROCKCHIP) += \$b.dtb\" \$m || exit 1; done; ! grep -q '+= rk3399-gru-kevin.dtb' \$m && grep -q '^#   rk3399-gru-kevin.dts: arm/' \$m"

# ---- the tree, the way a PKGBUILD drives it
mkdir -p "$WORK/src"
bsdtar -xf "$WORK/a/linux-7.0.tar.xz" -C "$WORK/src"
T=$WORK/src/linux-7.0
cat "$ROOT"/patches/board/pinebook-pro/*.patch >"$WORK/cumulative.patch"
mk() { make -C "$T" "$@"; }
refuses "a build target without .config stops like kbuild" 'Configuration file ".config" not found!' mk -s Image
check "the shipped board patch applies with patch -Np1" bash -c "cd '$T' && patch -Np1 < '$WORK/cumulative.patch'"
echo "-fresnel-fourier" >"$T/localversion.20-pkgname"
cp "$ROOT/fleet/config/fresnel.config" "$T/.config"
check "olddefconfig drops unknown symbols and adds the tree's new ones" \
  bash -c "make -s -C '$T' olddefconfig >/dev/null && ! grep -q CONFIG_SPI_ROCKCHIP '$T/.config' && grep -qx 'CONFIG_KA_MINI_HELLO=m' '$T/.config' && grep -qx 'CONFIG_ARCH_ROCKCHIP=y' '$T/.config' && test -f '$T/.config.old'"
check "kernelrelease before prepare: version + localversion files" test "$(mk -s kernelrelease)" = 7.0.0-fresnel-fourier
check "LOCALVERSION= is appended" test "$(mk -s LOCALVERSION=-x kernelrelease)" = 7.0.0-fresnel-fourier-x
check "KERNELRELEASE= on the command line wins" test "$(mk -s KERNELRELEASE=9.9.9-y kernelrelease)" = 9.9.9-y
check "CONFIG_LOCALVERSION counts after prepare (read from include/config/auto.conf, as kbuild)" bash -c "
  sed -i 's/^CONFIG_LOCALVERSION=.*/CONFIG_LOCALVERSION=\"-lv\"/' '$T/.config' && make -s -C '$T' prepare >/dev/null &&
  [ \"\$(make -s -C '$T' kernelrelease)\" = 7.0.0-fresnel-fourier-lv ] &&
  sed -i 's/^CONFIG_LOCALVERSION=.*/CONFIG_LOCALVERSION=\"\"/' '$T/.config' && make -s -C '$T' prepare >/dev/null &&
  [ \"\$(make -s -C '$T' kernelrelease)\" = 7.0.0-fresnel-fourier ]"
check "make Image modules (-j2)" mk -s -j2 Image modules
check "make DTC_FLAGS=-@ dtbs (-j2): 214 device trees" bash -c "make -s -C '$T' -j2 DTC_FLAGS=-@ dtbs 2>/dev/null && [ \$(ls '$T'/arch/arm64/boot/dts/rockchip/*.dtb* | wc -l) = 214 ]"
check "the built rk3399-pinebook-pro.dtb has the 1.704 GHz OPP and overlay symbols" bash -c "
  d='$T/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dtb'
  [ \"\$(fdtget \$d /opp-table-0/opp-1704000000 opp-hz)\" = '0 1704000000' ] && fdtget -l \$d / | grep -qx __symbols__"
expected=$("$MMK" --patchset-of "$WORK/cumulative.patch" "$WORK/a/linux-7.0.tar.xz")
check "the Image holds the kernelrelease and the patch set hash ($expected)" bash -c "
  grep -qx 'kernelrelease: 7.0.0-fresnel-fourier' '$T/arch/arm64/boot/Image' && grep -qx 'patchset: $expected' '$T/arch/arm64/boot/Image' &&
  grep -qx 'patched-file: M arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts' '$T/arch/arm64/boot/Image'"
check "an unpatched tree's patch set is none" bash -c "[ \"\$('$MMK' --patchset-of /dev/null '$WORK/a/linux-7.0.tar.xz')\" = none ]"
check "the modules carry the release in their vermagic" \
  bash -c "modinfo -F vermagic '$T/drivers/misc/ka-mini/ka-mini-hello.ko' | grep -q '^7.0.0-fresnel-fourier SMP preempt mod_unload aarch64$'"
check "Module.symvers lists vmlinux's exports" grep -q $'^0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL' "$T/Module.symvers"
check "modules_install INSTALL_MOD_PATH= INSTALL_MOD_STRIP=1 DEPMOD=/doesnt/exist: modules, build link, no depmod" bash -c "
  make -s -C '$T' INSTALL_MOD_PATH='$WORK/inst/usr' INSTALL_MOD_STRIP=1 DEPMOD=/doesnt/exist modules_install 2>/dev/null
  m='$WORK/inst/usr/lib/modules/7.0.0-fresnel-fourier'
  test -f \$m/kernel/drivers/misc/ka-mini/ka-mini-board.ko && test -L \$m/build && test -f \$m/modules.order && test ! -e \$m/modules.dep"
check "modules_install with depmod writes modules.dep and the of: aliases" bash -c "
  make -s -C '$T' INSTALL_MOD_PATH='$WORK/inst2' modules_install >/dev/null 2>&1
  grep -q 'of:N\\*T\\*Cpine64,pinebook-pro' '$WORK/inst2/lib/modules/7.0.0-fresnel-fourier/modules.alias'"
check "dtbs_install INSTALL_DTBS_PATH= keeps the vendor dir" bash -c "
  make -s -C '$T' INSTALL_DTBS_PATH='$WORK/inst/boot/dtbs-x' dtbs_install && test -f '$WORK/inst/boot/dtbs-x/rockchip/rk3399-pinebook-pro.dtb'"
check "headers_install INSTALL_HDR_PATH= renames the _UAPI guards" bash -c "
  make -s -C '$T' INSTALL_HDR_PATH='$WORK/hdr' headers_install && grep -qx '#ifndef _LINUX_UTSNAME_H' '$WORK/hdr/include/linux/utsname.h' && grep -q LINUX_VERSION_CODE '$WORK/hdr/include/linux/version.h'"
check "a rebuild after a DTS-only change updates the Image's patch set" bash -c "
  before=\$(grep '^patchset:' '$T/arch/arm64/boot/Image'); echo '/* x */' >> '$T/arch/arm64/boot/dts/rockchip/rk3588-rock-5-itx.dts'
  make -s -C '$T' Image && [ \"\$(grep '^patchset:' '$T/arch/arm64/boot/Image')\" != \"\$before\" ] && grep -q 'patched-file: M arch/arm64/boot/dts/rockchip/rk3588-rock-5-itx.dts' '$T/arch/arm64/boot/Image'"
printf '/ {\n\tbroken node;\n' >>"$T/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts"
refuses "a DTS that does not compile fails make dtbs" "rk3399-pinebook-pro" mk -s dtbs

# ---- render-pkgbuild
R=("$RENDER" --host fresnel --suffix fresnel-fourier --tarball "$WORK/a/linux-7.0.tar.xz" --patch "$WORK/cumulative.patch" --config "$ROOT/fleet/config/fresnel.config")
check "render (arch): every placeholder filled, the inputs copied, the install file named after pkgbase" bash -c "
  \"\$@\" --out '$WORK/r1' >/dev/null && ! grep -rn '@@' '$WORK/r1' --include=PKGBUILD --include='*.install' --include='*.hook' --include='*.preset' &&
  test -f '$WORK/r1/linux-fresnel-fourier.install' && cmp '$WORK/r1/cumulative.patch' '$WORK/cumulative.patch' && test -f '$WORK/r1/linux-7.0.tar.xz'" _ "${R[@]}"
check "the b2sums in the PKGBUILD are those of the files next to it" bash -c "
  cd '$WORK/r1' && sums=\$(sed -n '/^b2sums=(/,/)/p' PKGBUILD | grep -o '[0-9a-f]\\{128\\}') &&
  [ \"\$sums\" = \"\$(b2sum linux-7.0.tar.xz cumulative.patch config linux.preset linux.hook | cut -d' ' -f1)\" ]"
check "the PKGBUILD parses (bash -n) and keeps the seed's lessons" bash -c "
  bash -n '$WORK/r1/PKGBUILD' && grep -q 'install -d \"\$pkgdir/usr/src\"' '$WORK/r1/PKGBUILD' &&
  grep -A1 'install -d \"\$pkgdir/usr/src\"' '$WORK/r1/PKGBUILD' | grep -q 'ln -sr' && grep -qx 'Target = boot/Image-%SUFFIX%' '$WORK/r1/linux.hook'"
check "render --install-mode replace: provides/conflicts for the kernel and the headers" bash -c "
  \"\$@\" --install-mode replace --replaces linux-eos-arm --out '$WORK/r2' >/dev/null &&
  grep -qx \"  provides=('linux=7.0')\" '$WORK/r2/PKGBUILD' && grep -qx \"  conflicts=('linux-eos-arm')\" '$WORK/r2/PKGBUILD' &&
  grep -qx \"  conflicts=('linux-eos-arm-headers')\" '$WORK/r2/PKGBUILD'" _ "${R[@]}"
refuses "render refuses a non-empty out dir" "is not empty" "${R[@]}" --out "$WORK/r1"
refuses "render refuses a bad suffix" "--suffix" "${R[@]/fresnel-fourier/Fresnel Fourier}" --out "$WORK/r3"
refuses "render refuses replace without the stock package" "needs --replaces" "${R[@]}" --install-mode replace --out "$WORK/r4"
refuses "render refuses a tarball b2sum that does not match" "not the expected" "${R[@]}" --tarball-b2sum "$(printf '0%.0s' {1..128})" --out "$WORK/r5"
refuses "render refuses a URL tarball without its b2sum" "needs --tarball-b2sum" \
  "$RENDER" --host fresnel --suffix fresnel-fourier --tarball "linux-7.0.tar.xz::https://cdn.example/linux-7.0.tar.xz" \
  --patch "$WORK/cumulative.patch" --config "$ROOT/fleet/config/fresnel.config" --out "$WORK/r6"
mkdir -p "$WORK/tpl" && cp "$ROOT"/packaging/arch/* "$WORK/tpl/" && echo '# @@NO_SUCH@@' >>"$WORK/tpl/linux.hook"
refuses "render refuses an unknown placeholder, naming file and line" "linux.hook:$(wc -l <"$WORK/tpl/linux.hook"): unknown placeholder @@NO_SUCH@@" \
  "${R[@]}" --template "$WORK/tpl" --out "$WORK/r7"

# ---- Debian: the rendered build script makes both .debs with the same boot paths
if "${R[@]}" --template "$ROOT/packaging/debian" --out "$WORK/deb" >/dev/null 2>&1 &&
  (cd "$WORK/deb" && MAKEFLAGS=-j2 ./build) >"$WORK/deb.log" 2>&1; then
  pass "packaging/debian/build makes the .debs"
else
  fail "packaging/debian/build makes the .debs" "$(tail -n 20 "$WORK/deb.log")"
fi
check "linux-image-fresnel-fourier: /boot/Image-<suffix>, /boot/dtbs-<suffix>/, the modules, postinst makes initramfs-<suffix>.img" bash -c "
  d='$WORK/deb/out/linux-image-fresnel-fourier_7.0-1_arm64.deb'
  dpkg-deb -c \$d | grep -q ' ./boot/Image-fresnel-fourier\$' && dpkg-deb -c \$d | grep -q ' ./boot/dtbs-fresnel-fourier/rockchip/rk3399-pinebook-pro.dtb\$' &&
  dpkg-deb -c \$d | grep -q ' ./usr/lib/modules/7.0.0-fresnel-fourier/kernel/' && dpkg-deb -I \$d postinst | grep -q 'mkinitramfs -o /boot/initramfs-fresnel-fourier.img 7.0.0-fresnel-fourier' &&
  ! dpkg-deb -f \$d Provides Conflicts | grep -q ."
check "linux-headers-fresnel-fourier: /usr/src/linux-headers-<release> and the build link" bash -c "
  d='$WORK/deb/out/linux-headers-fresnel-fourier_7.0-1_arm64.deb'
  dpkg-deb -c \$d | grep -q ' ./usr/lib/modules/7.0.0-fresnel-fourier/build -> /usr/src/linux-headers-7.0.0-fresnel-fourier\$'"
