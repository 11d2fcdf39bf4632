#!/usr/bin/env bash
# Prepares this host for hyperlet: installs the Debian packages LXC and libvirt need and starts
# the daemons no service manager starts here. Idempotent: a second run changes nothing.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "not root: hyperlet drives lxc-* and the system libvirtd, which need root here."
  log "run 'sudo make host' once (or install lxc lxc-templates busybox-static rsync libvirt-daemon-system"
  log "libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils yourself), then retry."
  exit 1
fi

if ! command -v apt-get >/dev/null; then
  log "no apt-get: install LXC 5 (lxc-* tools, busybox template) and libvirt + QEMU with your distribution's tools."
  exit 1
fi

PACKAGES=(
  lxc lxc-templates busybox-static rsync            # containers (rsync: lxc-copy/lxc-snapshot)
  libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils  # VMs
  etcd-server openssl git iproute2 cpio xz-utils    # tests: control plane, guest image, git source
  dnsmasq-base wget zstd iptables                   # containers' DHCP on lxcbr0; the download template; zstd images
  build-essential python3                           # better-sqlite3 builds from source
  zsh                                               # tests: the zsh completion script
  chromium                                          # tests: the dashboard in a real browser (playwright-core drives it)
  buildah podman runc mmdebstrap                    # tests: the agent image from the Containerfile (scripts/build-agent-image.sh)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool (tests of the alert rules in monitoring/) ships only in Debian's prometheus package. Its
# server is not wanted on a test host: policy-rc.d keeps the install from starting it, and it is disabled.
if ! command -v promtool >/dev/null; then
  log "installing prometheus for promtool (its server stays stopped and disabled)"
  export DEBIAN_FRONTEND=noninteractive
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null || { [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

# LXC: the busybox template must be there (the examples and tests create from it offline), and
# the default lxcpath must exist. The examples use network "none"; lxcbr0 (below) serves veths
# without a bridge. HYPERLET_LXC_BRIDGE=NAME also makes an isolated bridge (link up, no address, no uplink).
[ -x /usr/share/lxc/templates/lxc-busybox ] || { log "lxc-templates installed but lxc-busybox is missing"; exit 1; }
command -v busybox >/dev/null || { log "busybox-static is missing: the busybox template needs it"; exit 1; }
mkdir -p /var/lib/lxc
if [ -n "${HYPERLET_LXC_BRIDGE:-}" ] && ! ip link show "$HYPERLET_LXC_BRIDGE" >/dev/null 2>&1; then
  log "creating isolated bridge $HYPERLET_LXC_BRIDGE (no address)"
  ip link add "$HYPERLET_LXC_BRIDGE" type bridge && ip link set "$HYPERLET_LXC_BRIDGE" up
fi
# Containers on the default bridge get addresses: lxcbr0 with a DHCP server. An lxcbr0 that lxc-net
# (or the operator) runs is used as it is. Otherwise an isolated one: 10.0.3.1/24 (LXC's default
# subnet), dnsmasq for DHCP only (no DNS), no NAT, and forwarding from it dropped, so nothing a
# container sends leaves this host. Idempotent; HYPERLET_DHCP_BRIDGE and HYPERLET_DHCP_NET choose
# another bridge and /24 (tests of this step use their own).
dhcp_bridge() {
  local br="$1" net="$2"
  if ip link show "$br" >/dev/null 2>&1 && ip -4 addr show dev "$br" | grep -q 'inet ' && pgrep -f "dnsmasq.*$br" >/dev/null; then
    return 0
  fi
  if ! ip link show "$br" >/dev/null 2>&1; then
    log "creating bridge $br ($net.1/24, DHCP by dnsmasq, no uplink, no forwarding)"
    ip link add "$br" type bridge
  fi
  ip -4 addr show dev "$br" | grep -q "inet $net.1/" || ip addr add "$net.1/24" dev "$br"
  ip link set "$br" up
  iptables -C FORWARD -i "$br" -j DROP 2>/dev/null || iptables -I FORWARD -i "$br" -j DROP
  mkdir -p /var/lib/hyperlet
  pgrep -f "dnsmasq.*$br" >/dev/null || dnsmasq --conf-file=/dev/null --port=0 --interface="$br" --bind-interfaces \
    --dhcp-range="$net.10,$net.254,1h" --dhcp-leasefile="/var/lib/hyperlet/dnsmasq-$br.leases" --pid-file="/run/hyperlet-dnsmasq-$br.pid"
}
dhcp_bridge "${HYPERLET_DHCP_BRIDGE:-lxcbr0}" "${HYPERLET_DHCP_NET:-10.0.3}"
if grep -qE '^cgroup [^ ]+ cgroup [^ ]*memory' /proc/self/mounts; then lxc_cgroup=v1; else lxc_cgroup=v2; fi

# /dev/kvm is root-only on these machines; libvirt then re-probes QEMU on every define (~40 s).
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd -r kvm
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
else
  log "no /dev/kvm: VirtualMachines need hypervisor: qemu (software emulation) on this host"
fi

# No systemd runs the daemons here: start them when they are not running.
if ! pgrep -x virtlogd >/dev/null; then
  log "starting virtlogd"; virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
  log "starting libvirtd"; libvirtd -d
fi
for _ in $(seq 1 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
[ -S /run/libvirt/libvirt-sock ] || { log "libvirtd did not open /run/libvirt/libvirt-sock"; exit 1; }
if ! out="$(timeout 60 virsh -c qemu:///system version 2>&1)"; then
  log "libvirtd runs but cannot open qemu:///system (QEMU driver missing or broken): $out"; exit 1
fi
# The tiny guest the libvirt e2e tests and examples/hello-vm.yaml boot (cached, Debian packages only).
timeout 900 bash "$(dirname "$0")/build-test-guest.sh" >/dev/null || { log "cannot build the test guest (scripts/build-test-guest.sh)"; exit 1; }

log "host ready: lxc $(lxc-create --version 2>/dev/null || echo '?') (cgroup $lxc_cgroup), libvirt $(libvirtd --version | awk '{print $NF}')"
