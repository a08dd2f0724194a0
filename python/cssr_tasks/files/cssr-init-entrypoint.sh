#!/bin/sh
# cssr-init: puts the kernel trees of one kernel on the shared modules volume.
#
# The image holds /usr/src/kernels/<kver> (kernel-devel) and /lib/modules/<kver> (modules, with
# its `build` link to /usr/src/kernels/<kver>) for every kernel of its kernel set. This copies the
# pair for ${CSSR_KERNEL:-$(uname -r)} onto the volume, laid out as the proof of concept's
# `modules` PVC, so that the module builder and the router find them where they always did:
#   <volume>/modules/<kver>   mounted by them at /usr/lib/modules (subPath modules)
#   <volume>/kernels/<kver>   mounted by them at /usr/src/kernels (subPath kernels)
#
# Mount contract: the whole volume at $CSSR_VOLUME (default /mnt/modules-volume), or the two
# subPaths anywhere, named by CSSR_MODULES_DIR and CSSR_KERNELS_DIR. CSSR_KERNEL overrides
# `uname -r`. CSSR_IMAGE_ROOT (tests only) is prefixed to the image's own tree paths.
#
# Safe when run twice, concurrently (the build-kmods layout steps of several runs sharing one
# volume), and over what a killed run left:
# - a tree is copied into a temporary folder beside its final place, marked complete, and renamed
#   into place in one step (mv -T is rename(2)); it is never copied into a live folder;
# - a folder found there without the mark (a killed copy of an older version of this script, or a
#   module build that ran first) is replaced the same way: its `dpdk` folder (built modules) moves
#   into the new copy, the rest is dropped; should another run's complete copy be moved aside by
#   mistake in a race, it is put back;
# - temporary folders are named .<kver>.cssr-tmp.<host>.<pid>.* ; those of dead runs are removed: on
#   this host when their process is gone, from other hosts when untouched for CSSR_STALE_SECONDS
#   (default 3600; a copy takes minutes).
# Every failure is one line on stderr and exit status 1.
set -eu

kver=${CSSR_KERNEL:-$(uname -r)}
volume=${CSSR_VOLUME:-/mnt/modules-volume}
modules_dir=${CSSR_MODULES_DIR:-$volume/modules}
kernels_dir=${CSSR_KERNELS_DIR:-$volume/kernels}
image_root=${CSSR_IMAGE_ROOT:-}
stale_seconds=${CSSR_STALE_SECONDS:-3600}
mark=.cssr-init-complete
host=$(uname -n)
attempts=20

say() { echo "cssr-init: $*"; }
fail() { echo "cssr-init: $*" >&2; exit 1; }
first_line() { printf '%s\n' "$1" | head -n 1; }

held=""
for tree in "$image_root"/usr/src/kernels/*/; do
  [ -d "$tree" ] || continue
  name=${tree%/}
  held="${held:+$held, }${name##*/}"
done

case $kver in
  "" | */* | .* | *[!A-Za-z0-9._+~-]*)
    fail "kernel version '$kver' is not valid; set CSSR_KERNEL to a version such as 5.14.0-427.40.1.el9_4.x86_64" ;;
esac
case $stale_seconds in
  "" | *[!0-9]*) fail "CSSR_STALE_SECONDS='$stale_seconds' is not a whole number of seconds such as 3600" ;;
esac
if [ ! -d "$image_root/usr/src/kernels/$kver" ] || [ ! -d "$image_root/lib/modules/$kver" ]; then
  fail "kernel $kver is not in this image, which holds ${held:-no kernel}; re-run the cssr-deploy pipeline so that it builds cssr-init for the nodes' kernel set"
fi

# clean_leftovers PARENT: removes the temporary folders of dead runs for this kernel.
clean_leftovers() {
  old=$1/.cssr-init-age.$host.$$
  touch -d "@$(($(date +%s) - stale_seconds))" "$old" 2>/dev/null || return 0
  for left in "$1/.$kver.cssr-tmp."*; do
    [ -d "$left" ] || continue
    rest=${left#"$1/.$kver.cssr-tmp."}
    owner_pid=${rest%.*}
    owner_host=${owner_pid%.*}
    owner_pid=${owner_pid##*.}
    dead=
    if [ "$owner_host" = "$host" ]; then
      if [ "$owner_pid" = "$$" ] || ! kill -0 "$owner_pid" 2>/dev/null; then
        dead="its process $owner_pid is gone"
      fi
    elif [ "$left" -ot "$old" ]; then
      dead="untouched for more than ${stale_seconds}s"
    fi
    if [ -n "$dead" ]; then
      say "removing ${left} left by a run on $owner_host: $dead"
      rm -rf "$left" || true
    fi
  done
  # the copies of earlier versions of this script, named .<kver>.XXXXXX: by age alone
  for left in "$1/.$kver."??????; do
    if [ -d "$left" ] && [ "$left" -ot "$old" ]; then
      say "removing ${left}, an unfinished copy untouched for more than ${stale_seconds}s"
      rm -rf "$left" || true
    fi
  done
  rm -f "$old"
}

# install_tree SOURCE PARENT: SOURCE becomes PARENT/<kver>, unless it is there already.
install_tree() {
  src=$1
  dest=$2/$kver
  if [ -e "$dest/$mark" ]; then
    say "$dest is complete; kept"
    return 0
  fi
  if ! out=$(mkdir -p "$2" 2>&1); then
    fail "could not create $2: $(first_line "$out"); mount the modules volume at $volume (or set CSSR_MODULES_DIR and CSSR_KERNELS_DIR) and make it writable"
  fi
  clean_leftovers "$2"
  if ! tmp=$(mktemp -d "$2/.$kver.cssr-tmp.$host.$$.XXXXXX" 2>&1); then
    fail "could not create a temporary directory in $2: $(first_line "$tmp")"
  fi
  if ! out=$(cp -RPp "$src/." "$tmp/" 2>&1 && chmod 0755 "$tmp" 2>&1 && touch "$tmp/$mark" 2>&1); then
    rm -rf "$tmp"
    fail "could not copy $src to $2: $(first_line "$out")"
  fi
  completed=
  try=0
  while [ "$try" -lt "$attempts" ]; do
    try=$((try + 1))
    if [ -e "$dest/$mark" ]; then
      # built modules we carried go with the copy that landed; should that copy be away at this
      # instant (another run is looking at it, aside), look again rather than drop them
      if [ -d "$tmp/dpdk" ] && [ ! -e "$dest/dpdk" ] && ! mv -T "$tmp/dpdk" "$dest/dpdk" 2>/dev/null; then
        continue
      fi
      rm -rf "$tmp"
      say "$dest was copied by another run meanwhile; kept"
      return 0
    fi
    if mv -T "$tmp" "$dest" 2>/dev/null; then
      if [ -n "$completed" ]; then
        say "completed $dest (it was there without the trees of this image; its dpdk folder was kept)"
      else
        say "copied $src to $dest"
      fi
      return 0
    fi
    # $dest is there without the mark: move it aside in one rename, then look at what was moved
    aside=$(mktemp -d "$2/.$kver.cssr-tmp.$host.$$.XXXXXX") || fail "could not create a temporary directory in $2"
    if mv -T "$dest" "$aside/tree" 2>/dev/null; then
      if [ -e "$aside/tree/$mark" ]; then
        # another run's complete copy landed just before our move: put it back (or keep whichever landed)
        mv -T "$aside/tree" "$dest" 2>/dev/null || true
      else
        completed=yes
      fi
      # whatever stays aside, its built modules come with us (the rest of it is dropped)
      if [ -d "$aside/tree/dpdk" ] && [ ! -e "$tmp/dpdk" ]; then
        mv "$aside/tree/dpdk" "$tmp/dpdk" || fail "could not keep $dest/dpdk in the new copy"
      fi
    fi
    rm -rf "$aside"
  done
  rm -rf "$tmp"
  fail "could not move the copy of $src into $dest after $attempts attempts: other runs keep replacing it"
}

install_tree "$image_root/lib/modules/$kver" "$modules_dir"
install_tree "$image_root/usr/src/kernels/$kver" "$kernels_dir"
say "kernel $kver ready on the modules volume"
