#!/usr/bin/env bash
# Apptainer for a Debian 12 machine, which has no apptainer package: Debian unstable's (it needs
# glibc >= 2.38) installed into a debootstrapped `sid` root, entered through a private mount
# namespace and pivot_root, and run as an unprivileged user (docs/DEPLOY.md).
#
#   sudo tools/apptainer_sid.sh setup           # once: debootstrap sid + apt-get install apptainer (~2 min)
#   tools/bin/apptainer ARGS...                 # = this script's `exec`: apptainer ARGS in the sid root
#   PATH=$PWD/tools/bin:$PATH snakemake --cores 2 --use-singularity
#
# `exec` needs root (for the mount namespace); apptainer itself then runs as the owner of the
# current directory (STVM_APPTAINER_UID overrides; root-owned directories use uid 1000), since as
# root it needs capabilities this machine does not grant. The host's /work, /tmp, /var/tmp, /root,
# /home, /opt and the current directory are bound into the sid root at their own paths.
# Where a real apptainer is installed, use it instead: none of this is needed.
set -euo pipefail
SID=${STVM_APPTAINER_ROOT:-/var/lib/stvm/apptainer-sid}
SCRATCH=${STVM_APPTAINER_SCRATCH:-/var/tmp/stvm-apptainer}  # APPTAINER_TMPDIR/CACHEDIR: on a real mount point
die() { echo "apptainer_sid.sh: $*" >&2; exit 2; }

setup() {
  [ "$(id -u)" = 0 ] || die "setup needs root (debootstrap); run it with sudo"
  command -v debootstrap > /dev/null || die "'debootstrap' not found; install it with: apt-get install debootstrap"
  if [ -x "$SID/usr/bin/apptainer" ] && [ -x "$SID/usr/bin/squashfuse_ll" ]; then chmod 666 /dev/fuse 2> /dev/null || true; echo "apptainer_sid.sh: $SID has $("$0" exec --version)"; return 0; fi
  mkdir -p "$SID"
  if [ ! -x "$SID/usr/bin/apt-get" ]; then
    debootstrap --variant=minbase sid "$SID" http://deb.debian.org/debian > /var/log/stvm-apptainer-sid.log 2>&1 \
      || die "debootstrap sid failed (log: /var/log/stvm-apptainer-sid.log)"
  fi
  cp /etc/resolv.conf "$SID/etc/resolv.conf"
  mount -t proc proc "$SID/proc"
  trap 'umount "$SID/proc"' EXIT
  # Check-Valid-Until off: a machine whose clock runs ahead sees sid's (daily) Release file as expired
  chroot "$SID" sh -c 'apt-get -o Acquire::Check-Valid-Until=false update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends apptainer squashfs-tools squashfuse fuse2fs fuse3 ca-certificates' \
    >> /var/log/stvm-apptainer-sid.log 2>&1 || die "apt-get install apptainer in $SID failed (log: /var/log/stvm-apptainer-sid.log)"
  # no devpts mount inside containers (this machine's kernel refuses a new devpts instance)
  sed -i 's/^mount devpts = yes/mount devpts = no/' "$SID/etc/apptainer/apptainer.conf"
  grep -q '^mount devpts = no' "$SID/etc/apptainer/apptainer.conf" || echo 'mount devpts = no' >> "$SID/etc/apptainer/apptainer.conf"
  rm -rf "$SID"/var/cache/apt/archives/*.deb
  # Unprivileged apptainer mounts a SIF with squashfuse (else it unpacks the whole image for every
  # run); /dev/fuse must be usable by users, its usual mode (udev's), which a machine without udev lacks.
  chmod 666 /dev/fuse 2> /dev/null || true
  echo "apptainer_sid.sh: $SID ready"
}

enter() {  # in a private mount namespace: bind the host paths, pivot_root into SID, drop to the user
  local cwd=$PWD uid gid d
  uid=${STVM_APPTAINER_UID:-$(stat -c %u "$cwd")}
  [ "$uid" = 0 ] && uid=1000
  gid=$(getent passwd "$uid" | cut -d: -f4); gid=${gid:-$uid}
  mount --make-rprivate /
  mount --bind "$SID" "$SID"
  mkdir -p "$SCRATCH"; chown "$uid:$gid" "$SCRATCH"
  for d in /proc /sys /dev /work /tmp /var/tmp /root /home /opt "$SCRATCH" "$cwd"; do
    [ -d "$d" ] || continue
    mkdir -p "$SID$d"
    mountpoint -q "$SID$d" || mount --rbind "$d" "$SID$d"
  done
  for d in /etc/passwd /etc/group /etc/hosts /etc/resolv.conf; do  # the host's users and names (apptainer reads them)
    [ -f "$d" ] || continue
    [ -e "$SID$d" ] || touch "$SID$d"
    mount --bind "$d" "$SID$d"
  done
  cd "$SID"
  mkdir -p .oldroot
  pivot_root . .oldroot
  umount -l /.oldroot
  cd "$cwd"
  export APPTAINER_TMPDIR=$SCRATCH/tmp APPTAINER_CACHEDIR=$SCRATCH/cache HOME=$SCRATCH
  exec setpriv --reuid="$uid" --regid="$gid" --clear-groups \
    sh -c 'mkdir -p "$APPTAINER_TMPDIR" "$APPTAINER_CACHEDIR" && exec /usr/bin/apptainer "$@"' apptainer "$@"
}

case "${1:-}" in
  setup) setup ;;
  exec)
    shift
    [ -x "$SID/usr/bin/apptainer" ] || die "no apptainer in $SID; set it up with: sudo tools/apptainer_sid.sh setup"
    [ "$(id -u)" = 0 ] || die "entering the sid root needs root (a mount namespace); run it with sudo"
    exec unshare --mount --propagation private "$0" --inside "$@" ;;
  --inside) shift; enter "$@" ;;
  *) die "usage: tools/apptainer_sid.sh setup | exec ARGS..." ;;
esac
