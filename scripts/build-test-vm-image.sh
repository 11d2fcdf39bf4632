#!/usr/bin/env bash
# Builds the Debian 12 VM disk image the cloud-init e2e tests serve over HTTP and boot under
# type='qemu', from Debian packages only (mmdebstrap against this host's apt sources):
#   - linux-image-cloud-amd64, systemd, the real cloud-init (NoCloud datasource), qemu-guest-agent,
#     ifupdown + isc-dhcp-client (cloud-init's Debian network renderer), dbus (logind: the ACPI power
#     button and qemu-ga's `shutdown -P +0` need it), on one ext4 filesystem
#     that fills the whole disk (no partition table: root=/dev/vda, cloud-init's resize_rootfs
#     grows it when the disk is larger);
#   - extlinux installed in that filesystem's boot sector, so SeaBIOS boots the disk (BIOS boot,
#     no kernel outside the image), with the kernel console on ttyS0.
# Output: $CACHE/debian12-<key>.qcow2 (compressed qcow2), where <key> hashes this script (it holds
# the package list and every setting). Built once under a lock (flock): parallel callers wait for
# the first build and reuse it. Prints the path of the image.
# Usage: build-test-vm-image.sh [CACHE_DIR]   (default /var/cache/hyperlet/vm-image)
set -euo pipefail

CACHE="${1:-/var/cache/hyperlet/vm-image}"
log() { printf 'build-test-vm-image: %s\n' "$*" >&2; }

PACKAGES="linux-image-cloud-amd64,systemd,systemd-sysv,udev,dbus,cloud-init,qemu-guest-agent,ifupdown,isc-dhcp-client,iproute2,netbase"
SIZE_MB=1536
KEY="$(sha256sum "$0" | cut -c1-16)"
OUT="$CACHE/debian12-$KEY.qcow2"

mkdir -p "$CACHE"
chmod 755 "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [ -s "$OUT" ]; then
  echo "$OUT"; exit 0
fi
for tool in mmdebstrap mkfs.ext4 extlinux qemu-img mount losetup; do
  command -v "$tool" >/dev/null || { log "cannot build the VM image: $tool is missing (run scripts/setup-host.sh)"; exit 1; }
done

START="$(date +%s)"
WORK="$(mktemp -d)"
MNT="$WORK/mnt"
cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
  rm -rf "$WORK"
}
trap cleanup EXIT

ROOT="$WORK/root"
# cloud-init under software emulation spends ~45 s per stage in Python: only NoCloud is probed, and
# only the modules the tests and a first boot need run (host name, users and keys, files, runcmd).
CLOUD_CFG="$WORK/90-hyperlet.cfg"
cat > "$CLOUD_CFG" <<'EOF'
datasource_list: [ NoCloud, None ]
cloud_init_modules: [seed_random, write_files, growpart, resizefs, set_hostname, update_hostname, update_etc_hosts, users_groups, ssh]
cloud_config_modules: [runcmd]
cloud_final_modules: [scripts_per_once, scripts_per_boot, scripts_per_instance, scripts_user, ssh_authkey_fingerprints, final_message]
EOF
export CLOUD_CFG
log "mmdebstrap bookworm ($PACKAGES)"
# Docs, man pages and locales are left out: they only cost build and copy time.
timeout 1800 mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo "COMPRESS=gzip" > "$1/etc/initramfs-tools/conf.d/hyperlet"' \
  --customize-hook='echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" > "$1/etc/fstab"' \
  --customize-hook='rm -f "$1/etc/hostname" && : > "$1/etc/machine-id"' \
  --customize-hook='printf "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n" > "$1/etc/network/interfaces"' \
  --customize-hook='cp "$CLOUD_CFG" "$1/etc/cloud/cloud.cfg.d/90-hyperlet.cfg"' \
  --customize-hook='printf "virtio_pci\nvirtio_blk\next4\n" > "$1/etc/initramfs-tools/modules"' \
  --customize-hook='sed -i "s/^MODULES=.*/MODULES=list/" "$1/etc/initramfs-tools/initramfs.conf" && chroot "$1" update-initramfs -u -k all >/dev/null' \
  --customize-hook='chroot "$1" systemctl mask getty@tty1.service >/dev/null 2>&1 || true' \
  --customize-hook='chroot "$1" systemctl enable qemu-guest-agent >/dev/null 2>&1 || true' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true' \
  --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
  bookworm "$ROOT" || { log "cannot run mmdebstrap (are Debian's apt sources reachable?)"; exit 1; }

VMLINUZ="$(cd "$ROOT/boot" && ls vmlinuz-* | head -n1)"
INITRD="$(cd "$ROOT/boot" && ls initrd.img-* | head -n1)"
[ -n "$VMLINUZ" ] && [ -n "$INITRD" ] || { log "cannot find the kernel and initrd in the built tree"; exit 1; }
mkdir -p "$ROOT/boot/extlinux"
cat > "$ROOT/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 0
PROMPT 0
LABEL debian
  LINUX /boot/$VMLINUZ
  INITRD /boot/$INITRD
  APPEND root=/dev/vda rw console=ttyS0 net.ifnames=0
EOF

RAW="$WORK/disk.raw"
log "ext4 of ${SIZE_MB} MiB from the tree"
truncate -s "${SIZE_MB}M" "$RAW"
# extlinux 6.04 cannot boot from ext4 with 64bit or metadata_csum_seed: leave them off.
mkfs.ext4 -q -F -L root -O ^64bit,^metadata_csum_seed -d "$ROOT" "$RAW"
mkdir -p "$MNT"
mount -o loop "$RAW" "$MNT"
extlinux --install "$MNT/boot/extlinux" >/dev/null 2>&1 || { log "cannot install extlinux"; exit 1; }
umount "$MNT"

log "qemu-img convert to compressed qcow2"
qemu-img convert -c -f raw -O qcow2 "$RAW" "$WORK/disk.qcow2"
chmod 644 "$WORK/disk.qcow2"
# Older builds (other keys) are stale: remove them so the cache does not grow.
find "$CACHE" -maxdepth 1 -name 'debian12-*.qcow2' ! -name "$(basename "$OUT")" -delete
mv "$WORK/disk.qcow2" "$OUT"
log "image ready in $OUT ($(du -m "$OUT" | cut -f1) MiB, built in $(( $(date +%s) - START )) s)"
echo "$OUT"
