#!/usr/bin/env bash
# Builds the tiny bootable guest the libvirt e2e tests boot under type='qemu', from Debian
# packages only (no download from anywhere else): the kernel of linux-image-cloud-amd64 and an
# initramfs holding static busybox, the modules that let the guest see the ACPI power button
# (button.ko, evdev.ko) and balloon its memory (virtio_balloon.ko and its virtio deps, loaded in order), and an /init that
#   - prints "hyperlet-guest: up" on the serial console (ttyS0) once the button is armed,
#   - powers off when the power button is pressed (ACPI shutdown), unless the kernel command line
#     holds `hyperlet.ignore_acpi=1`, in which case it ignores the button (timeout-then-destroy test).
# Output (cached; rebuilt only when missing): $OUT/vmlinuz and $OUT/initrd.img.
# Usage: build-test-guest.sh [OUT_DIR]   (default /var/cache/hyperlet/guest). Prints OUT_DIR.
set -euo pipefail

OUT="${1:-/var/cache/hyperlet/guest}"
log() { printf 'build-test-guest: %s\n' "$*" >&2; }

if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ]; then
  echo "$OUT"; exit 0
fi
for tool in apt-get apt-cache dpkg-deb cpio gzip; do
  command -v "$tool" >/dev/null || { log "cannot build the guest: $tool is missing (run scripts/setup-host.sh)"; exit 1; }
done
BUSYBOX=/bin/busybox
if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
  log "cannot build the guest: static busybox is missing (apt-get install busybox-static)"; exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The metapackage names the current kernel package; download that one.
KPKG="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[ -n "$KPKG" ] || { log "cannot find the kernel package behind linux-image-cloud-amd64 (apt-get update?)"; exit 1; }
log "downloading $KPKG"
(cd "$WORK" && timeout 600 apt-get download -qq "$KPKG") || { log "cannot download $KPKG"; exit 1; }
dpkg-deb -x "$WORK"/"$KPKG"_*.deb "$WORK/kernel"
VMLINUZ="$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)"
KVER="$(basename "$VMLINUZ" | sed 's/^vmlinuz-//')"
MODDIR="$WORK/kernel/lib/modules/$KVER"

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,lib/modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
# Copy a module, decompressing it when the package ships .ko.xz (busybox insmod wants plain ELF).
add_module() {
  local found
  found="$(find "$MODDIR" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -n1)"
  [ -n "$found" ] || { log "note: module $1 not found (built in?)"; return 0; }
  case "$found" in
    *.xz) xz -dc "$found" > "$ROOT/lib/modules/$1.ko" ;;
    *.zst) zstd -dcq "$found" > "$ROOT/lib/modules/$1.ko" ;;
    *) cp "$found" "$ROOT/lib/modules/$1.ko" ;;
  esac
}
MODULES="button evdev virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon"
for m in $MODULES; do add_module "$m"; done

cat > "$ROOT/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in button evdev virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
  [ -f /lib/modules/$m.ko ] && { insmod /lib/modules/$m.ko 2>&1 | sed "s/^/hyperlet-guest: insmod $m: /" > /dev/ttyS0; }
done
IGNORE=0
grep -q 'hyperlet.ignore_acpi=1' /proc/cmdline && IGNORE=1
sleep 0.3
if [ "$IGNORE" = 0 ]; then
  # Any event on a power button's input device means "power off" (the only key it has).
  for ev in /sys/class/input/event*; do
    case "$(cat "$ev/device/name" 2>/dev/null)" in
      *"Power Button"*)
        ( dd if="/dev/input/$(basename "$ev")" bs=24 count=1 of=/dev/null 2>/dev/null
          echo "hyperlet-guest: power button, powering off" > /dev/ttyS0
          poweroff -f ) &
        ;;
    esac
  done
fi
echo "hyperlet-guest: up ignore_acpi=$IGNORE" > /dev/ttyS0
echo "hyperlet-guest: modules $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')" > /dev/ttyS0
while true; do sleep 3600; done
INIT
chmod 755 "$ROOT/init"

mkdir -p "$OUT"
(cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -9) > "$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
chmod 644 "$WORK/vmlinuz" "$WORK/initrd.img"
mv "$WORK/initrd.img" "$OUT/initrd.img"
mv "$WORK/vmlinuz" "$OUT/vmlinuz"
chmod 755 "$OUT"
log "guest ready in $OUT (kernel $KVER)"
echo "$OUT"
