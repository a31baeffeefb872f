#!/bin/bash
# Prototype: a partitioned, BIOS-GRUB-bootable Debian bookworm disk image built without loop
# devices or mounts. Run as root from anywhere; everything lands in /tmp/vmboot.
# Stages: rootfs | disk | boot-kernel | boot-grub | extras | switch   (default: rootfs disk)
# Everything in order: ./run-all.sh. Timings land in timings.txt, serial consoles in serial-*.log.
set -euo pipefail
W=/tmp/vmboot
cd "$W"
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
DISK=$W/disk.img            # the partitioned image (base, never booted)
SIZE_MIB=3072               # whole disk
OFF_MIB=1                   # partition 1 starts here (sector 2048); sectors 1..2047 hold core.img
LABEL=saltyard-vm
# t CMD...: run and record how long it took (in timings.txt too: a caller may redirect stderr)
t() { local s=$(date +%s.%N); "$@"; echo "TIME $(echo "$(date +%s.%N) - $s" | bc) s: $*" | tee -a "$W/timings.txt" >&2; }

host_packages() {
  # Host side: only sfdisk (package fdisk) beyond what vm.py already needs (debootstrap,
  # e2fsprogs, qemu-system-x86). GRUB itself runs from the rootfs via chroot.
  command -v sfdisk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fdisk
}

stage_rootfs() {
  rm -rf "$W/rootfs"
  # grub-pc-bin + grub2-common, NOT grub-pc: grub-pc's postinst would run grub-install on the
  # devices in debconf, which inside a chroot are the HOST's disks.
  t debootstrap --variant=minbase \
    --include=linux-image-cloud-amd64,grub-pc-bin,grub2-common,systemd-sysv,udev,kmod,openssh-server \
    "$SUITE" "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1
}

stage_finish_rootfs() {
  local R=$W/rootfs
  # What vm.py's _finish_vm_rootfs does, reduced to the prototype's needs, plus GRUB's files.
  echo vmboot > "$R/etc/hostname"
  # slirp's resolver; vm.py writes /etc/resolv.conf per VM with debugfs anyway.
  rm -f "$R/etc/resolv.conf"; echo "nameserver 10.0.2.3" > "$R/etc/resolv.conf"
  cat > "$R/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SRC
  mkdir -p "$R/etc/systemd/network"
  printf '[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\n' > "$R/etc/systemd/network/10-dhcp.network"
  chroot "$R" systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
  chroot "$R" systemctl disable e2scrub_reap.service >/dev/null 2>&1 || true
  [ -f "$W/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$W/id_ed25519"
  install -d -m 700 "$R/root/.ssh"; install -m 600 "$W/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
  # Root by UUID, so the same fstab holds whichever way the VM boots.
  echo "UUID=$FSUUID / ext4 rw,errors=remount-ro 0 1" > "$R/etc/fstab"
  # Debian's grub-mkconfig input: serial console, short menu timeout, a saved default.
  cat > "$R/etc/default/grub" <<GRUB
GRUB_DEFAULT=saved
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB
  # Inside the VM (not in the chroot, where "dep" would look at the build host's hardware),
  # update-initramfs packs only the modules this VM needs: a smaller initrd that GRUB loads faster
  # through the BIOS, and a shorter emulated mkinitramfs when the rollout installs a kernel.
  [ "${INITRD_DEP:-1}" = 1 ] && echo "MODULES=dep" > "$R/etc/initramfs-tools/conf.d/saltyard-vm"
  # What grub-install would copy: the modules GRUB's normal.mod loads at boot, from the rootfs's
  # own grub-pc-bin, so they match core.img (made by the same grub-mkimage below).
  rm -rf "$R/boot/grub/i386-pc"; mkdir -p "$R/boot/grub/i386-pc"
  cp "$R"/usr/lib/grub/i386-pc/*.mod "$R"/usr/lib/grub/i386-pc/*.lst "$R/boot/grub/i386-pc/"
  chroot "$R" grub-editenv /boot/grub/grubenv create
  # A first grub.cfg by hand (update-grub cannot run in a chroot: grub-probe finds no device
  # for /). The VM's own update-grub replaces it. Same entry shape as Debian's.
  local k=$(cd "$R/boot" && ls vmlinuz-* | sort -V | tail -1); k=${k#vmlinuz-}
  cat > "$R/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=1
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $FSUUID
menuentry 'Debian GNU/Linux, with Linux $k (build-time grub.cfg)' {
	linux /boot/vmlinuz-$k root=UUID=$FSUUID ro console=ttyS0
	initrd /boot/initrd.img-$k
}
CFG
}

stage_disk() {
  FSUUID=${FSUUID:-$(cat /proc/sys/kernel/random/uuid)}; echo "$FSUUID" > "$W/fsuuid"
  stage_finish_rootfs
  local R=$W/rootfs
  rm -f "$DISK"; truncate -s ${SIZE_MIB}M "$DISK"
  # 1. MBR partition table on the image file (no loop device, no kernel re-read needed).
  echo "label: dos
start=$((OFF_MIB*2048)), type=83, bootable" | sfdisk -q --wipe never "$DISK"
  # 2. The ext4 root filesystem inside partition 1, filled from the rootfs directory.
  mkfs.ext4 -q -F -L "$LABEL" -U "$FSUUID" -E offset=$((OFF_MIB*1048576)) -d "$R" "$DISK" $((SIZE_MIB-OFF_MIB))M
  # 3. GRUB core.img: made by the rootfs's own grub-mkimage (host needs no grub package).
  #    Its early config finds the root by UUID and hands over to /boot/grub (normal.mod, grub.cfg).
  printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$FSUUID" > "$R/tmp/early.cfg"
  chroot "$R" grub-mkimage -O i386-pc -o /tmp/core.img -c /tmp/early.cfg -p /boot/grub \
    biosdisk part_msdos ext2 search_fs_uuid
  local core=$R/tmp/core.img sectors
  sectors=$(( ($(stat -c %s "$core") + 511) / 512 ))
  [ "$sectors" -lt $((OFF_MIB*2048 - 1)) ] || { echo "core.img too big" >&2; exit 1; }
  # diskboot.img (core.img's first sector) ends in a block list: start sector (8 bytes) at 0x1f4,
  # sector count (2 bytes) at 0x1fc. grub-mkimage leaves start=2, count=sectors-1: exactly right
  # when core.img sits at sector 1. Checked, not assumed:
  local start count
  start=$(od -An -tu8 -j $((0x1f4)) -N8 "$core" | tr -d ' ')
  count=$(od -An -tu2 -j $((0x1fc)) -N2 "$core" | tr -d ' ')
  [ "$start" = 2 ] && [ "$count" = $((sectors-1)) ] || { echo "unexpected block list $start/$count" >&2; exit 1; }
  dd if="$core" of="$DISK" bs=512 seek=1 conv=notrunc status=none
  # 4. boot.img into the MBR's first 440 bytes (the disk signature and partition table stay).
  #    Its kernel_sector (8 bytes at 0x5c) is 1 by default: where core.img is. Checked too.
  local boot=$R/usr/lib/grub/i386-pc/boot.img
  [ "$(od -An -tu8 -j $((0x5c)) -N8 "$boot" | tr -d ' ')" = 1 ] || { echo "boot.img kernel_sector != 1" >&2; exit 1; }
  dd if="$boot" of="$DISK" bs=440 count=1 conv=notrunc status=none
  # Hard-disk boot: NOP out boot.img's 2-byte jump at 0x66 that skips the "BIOS passed a bad
  # drive number" workaround (what grub-bios-setup does for a non-floppy). SeaBIOS passes 0x80
  # correctly anyway; this keeps the result byte-identical to grub-bios-setup's.
  [ "$(od -An -tx1 -j $((0x66)) -N1 "$boot" | tr -d ' ')" = eb ] || { echo "boot.img: no jmp at 0x66" >&2; exit 1; }
  printf '\x90\x90' | dd of="$DISK" bs=1 seek=$((0x66)) conv=notrunc status=none
  rm -f "$core" "$R/tmp/early.cfg"
  ls -ls "$DISK"; sfdisk -l "$DISK"
}

# --- booting ------------------------------------------------------------------------------------
RUN=$W/run.img              # each boot test works on a sparse copy of the base disk
PORT=2222
SSH=(ssh -p $PORT -i $W/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10 root@127.0.0.1)

vm_start() {  # vm_start grub|kernel LOG  (no -no-reboot: a guest reboot restarts through the BIOS)
  local mode=$1 log=$2 boot=()
  if [ "$mode" = kernel ]; then
    local k=$(cd "$W/rootfs/boot" && ls vmlinuz-* | sort -V | tail -1); k=${k#vmlinuz-}
    boot=(-kernel "$W/rootfs/boot/vmlinuz-$k" -initrd "$W/rootfs/boot/initrd.img-$k"
          -append "root=UUID=$(cat $W/fsuuid) ro console=ttyS0")
  fi
  rm -f "$log"
  START=$(date +%s.%N)
  nice -n 10 qemu-system-x86_64 -name vmboot -accel tcg -m 1024 -smp 1 -nodefaults -display none \
    "${boot[@]}" \
    -drive file="$RUN",format=raw,if=virtio \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22 -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci -serial file:"$log" \
    -qmp unix:$W/qmp.sock,server=on,wait=off -pidfile $W/qemu.pid -daemonize
}

wait_log() {  # wait_log LOG REGEX TIMEOUT [FROM_BYTE]: seconds since START when REGEX appears
  local log=$1 re=$2 timeout=$3 from=${4:-1} end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt $end ]; do
    if tail -c +"$from" "$log" 2>/dev/null | tr -d '\r' | grep -qE "$re"; then
      echo "$(echo "$(date +%s.%N) - $START" | bc)"; return 0; fi
    sleep 1
  done
  echo "timeout waiting for /$re/ in $log" >&2; return 1
}

vm_kill() { [ -f $W/qemu.pid ] && kill "$(cat $W/qemu.pid)" 2>/dev/null; sleep 2; rm -f $W/qemu.pid; }

stage_boot() {  # stage_boot grub|kernel: boot a fresh copy, time QEMU start -> login prompt
  local mode=$1 log=$W/serial-$1.log
  vm_kill; cp --sparse=always "$DISK" "$RUN"
  vm_start "$mode" "$log"
  phases "$log" "BOOT $mode (load $(cut -d' ' -f1 /proc/loadavg))" 'GNU GRUB' 'Booting `' 'Linux version' 'Run /init' 'Switching root' 'login:' | tee -a $W/timings.txt
  "${SSH[@]}" 'uname -r; cat /proc/cmdline; systemctl is-system-running; findmnt -no SOURCE /' | tee -a $W/timings.txt
  vm_kill
}


phases() {  # phases LOG TITLE REGEX...: seconds since START at which each REGEX first shows (0.5 s polls)
  local log=$1 title=$2; shift 2; local -A seen=(); local out="" end=$(( $(date +%s) + 900 ))
  while [ -z "${seen[login:]:-}" ] && [ "$(date +%s)" -lt $end ]; do
    for re in "$@"; do
      [ -n "${seen[$re]:-}" ] && continue
      if tr -d '\r' < "$log" 2>/dev/null | grep -qaF "$re"; then
        seen[$re]=$(printf %.1f "$(echo "$(date +%s.%N) - $START" | bc)"); out+=" [$re]=${seen[$re]}"; fi
    done
    sleep 0.5
  done
  echo "$title:$out"
}

size() { stat -c %s "$1" 2>/dev/null || echo 0; }

reboot_vm() {  # reboot_vm LOG: systemctl reboot inside, time until the next login prompt
  local log=$1 from; from=$(( $(size "$log") + 1 ))   # a byte offset: the prompt line has no newline
  START=$(date +%s.%N)
  "${SSH[@]}" 'systemctl reboot' || true
  local g s; g=$(wait_log "$log" 'GNU GRUB' 600 "$from"); s=$(wait_log "$log" 'login:' 900 "$from")
  echo "REBOOT: GRUB menu after $g s, login prompt after $s s" | tee -a $W/timings.txt
  sleep 3   # sshd comes up around the getty
}

stage_switch() {
  # Boot via GRUB, install a newer kernel series from bookworm-security with apt inside the VM,
  # make it GRUB's saved default, reboot, check uname -r; then select the old one and reboot again.
  local log=$W/serial-switch.log
  vm_kill; cp --sparse=always "$DISK" "$RUN"
  vm_start grub "$log"
  echo "SWITCH boot: login after $(wait_log "$log" 'login:' 900) s" | tee -a $W/timings.txt
  local old; old=$("${SSH[@]}" 'uname -r'); echo "BEFORE: uname -r = $old" | tee -a $W/timings.txt
  local s=$(date +%s)
  "${SSH[@]}" 'apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install linux-image-6.12-cloud-amd64' \
     > $W/switch-apt.log 2>&1
  echo "apt-get update + install linux-image-6.12-cloud-amd64 in the VM: $(( $(date +%s) - s )) s" | tee -a $W/timings.txt
  grep -E 'grub|Found linux|Generating' $W/switch-apt.log | tee -a $W/timings.txt
  local new; new=$("${SSH[@]}" "ls /boot | sed -n 's/^vmlinuz-//p' | grep -vx '$old' | sort -V | tail -1")
  # The entry id update-grub writes for a kernel: gnulinux-VERSION-advanced-UUID inside the submenu.
  "${SSH[@]}" "grep -E '^\s*(menuentry|submenu)' /boot/grub/grub.cfg | sed 's/{\$//'" | tee -a $W/timings.txt
  local uuid; uuid=$(cat $W/fsuuid)
  "${SSH[@]}" "grub-set-default 'gnulinux-advanced-$uuid>gnulinux-$new-advanced-$uuid' && grub-editenv list" | tee -a $W/timings.txt
  reboot_vm "$log"
  echo "AFTER 1st reboot (default=$new): uname -r = $("${SSH[@]}" 'uname -r')" | tee -a $W/timings.txt
  "${SSH[@]}" "grub-set-default 'gnulinux-advanced-$uuid>gnulinux-$old-advanced-$uuid' && grub-editenv list" | tee -a $W/timings.txt
  reboot_vm "$log"
  echo "AFTER 2nd reboot (default=$old): uname -r = $("${SSH[@]}" 'uname -r')" | tee -a $W/timings.txt
  "${SSH[@]}" 'systemctl poweroff' || true; sleep 20; vm_kill
}

stage_extras() {
  # (a) vm.py's way of making a copy into a node: debugfs -w at the partition offset, no mount.
  # (b) inside the VM: grub-probe finds the root, and grub-install /dev/vda can reinstall the
  #     bootloader itself (the path a grub upgrade would take); the VM still boots after it.
  local log=$W/serial-extras.log off=$((OFF_MIB*1048576))
  vm_kill; cp --sparse=always "$DISK" "$RUN"
  local tmp; tmp=$(mktemp -d); echo vmboot-guest > "$tmp/hostname"; chmod 644 "$tmp/hostname"
  printf 'rm /etc/hostname\nwrite %s /etc/hostname\n' "$tmp/hostname" > "$tmp/script"
  debugfs -w -f "$tmp/script" "$RUN?offset=$off" 2>&1 | grep -v '^debugfs' || true
  [ "$(debugfs -R 'cat /etc/hostname' "$RUN?offset=$off" 2>/dev/null)" = vmboot-guest ] && echo "debugfs write at offset: read back OK"
  e2fsck -fn "$RUN?offset=$off" >/dev/null 2>&1 && echo "e2fsck -fn at offset: clean" || echo "e2fsck -fn at offset: exit $?"
  rm -rf "$tmp"
  vm_start grub "$log"
  phases "$log" "EXTRAS boot" 'Linux version' 'login:' | tee -a $W/timings.txt
  "${SSH[@]}" 'hostname; grub-probe /; grub-probe -t fs_uuid /; grub-probe -t drive /; ls -l /dev/disk/by-uuid; 
    grub-install --target=i386-pc /dev/vda 2>&1; grub-install --version' | tee $W/extras.txt
  reboot_vm "$log"
  "${SSH[@]}" 'echo after grub-install and reboot: $(hostname) $(uname -r)' | tee -a $W/extras.txt
  "${SSH[@]}" 'systemctl poweroff' || true; sleep 15; vm_kill
}

# --- main ---------------------------------------------------------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ $# -gt 0 ] || set -- rootfs disk
  for s in "$@"; do
    case $s in
      rootfs) host_packages; stage_rootfs ;;
      disk) t stage_disk ;;
      boot-grub) stage_boot grub ;;
      boot-kernel) stage_boot kernel ;;
      switch) stage_switch ;;
      extras) stage_extras ;;
      *) echo "unknown stage $s" >&2; exit 2 ;;
    esac
  done
fi
