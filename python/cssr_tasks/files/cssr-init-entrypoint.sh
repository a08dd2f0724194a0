#!/bin/sh
# cssr-init: puts the kernel trees of this node's kernel on the shared modules volume.
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
# `uname -r` (tests, and builders that target another kernel than the one they run on).
#
# Only what is missing is copied, and running twice or concurrently (pods on several nodes
# sharing one volume) is safe: a tree is copied into a temporary directory beside its final
# place on the same volume, marked complete, and renamed into place in one step (mv -T is
# rename(2)); a run that loses the race drops its copy. A directory found without the mark (made
# by another tool, such as a module build that ran first) is completed in place.
# Every failure is one line on stderr and exit status 1.
set -eu

kver=${CSSR_KERNEL:-$(uname -r)}
volume=${CSSR_VOLUME:-/mnt/modules-volume}
modules_dir=${CSSR_MODULES_DIR:-$volume/modules}
kernels_dir=${CSSR_KERNELS_DIR:-$volume/kernels}
mark=.cssr-init-complete

say() { echo "cssr-init: $*"; }
fail() { echo "cssr-init: $*" >&2; exit 1; }
first_line() { printf '%s\n' "$1" | head -n 1; }

held=""
for tree in /usr/src/kernels/*/; do
  [ -d "$tree" ] || continue
  name=${tree%/}
  held="${held:+$held, }${name##*/}"
done

case $kver in
  "" | */* | .*) fail "kernel version '$kver' is not valid; set CSSR_KERNEL to a version such as 5.14.0-427.40.1.el9_4.x86_64" ;;
esac
if [ ! -d "/usr/src/kernels/$kver" ] || [ ! -d "/lib/modules/$kver" ]; then
  fail "kernel $kver is not in this image, which holds ${held:-no kernel}; re-run the cssr-deploy pipeline so that it builds cssr-init for the nodes' kernel set"
fi

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
  if [ -d "$dest" ]; then
    if ! out=$(cp -RPpf "$src/." "$dest/" 2>&1 && touch "$dest/$mark" 2>&1); then
      fail "could not complete $dest from $src: $(first_line "$out")"
    fi
    say "completed $dest (it was there without the trees of this image)"
    return 0
  fi
  if ! tmp=$(mktemp -d "$2/.$kver.XXXXXX" 2>&1); then
    fail "could not create a temporary directory in $2: $(first_line "$tmp")"
  fi
  if ! out=$(cp -RPp "$src/." "$tmp/" 2>&1 && chmod 0755 "$tmp" 2>&1 && touch "$tmp/$mark" 2>&1); then
    rm -rf "$tmp"
    fail "could not copy $src to $2: $(first_line "$out")"
  fi
  if mv -T "$tmp" "$dest" 2>/dev/null; then
    say "copied $src to $dest"
  elif [ -e "$dest/$mark" ]; then
    rm -rf "$tmp"
    say "$dest was copied by another run meanwhile; kept"
  else
    rm -rf "$tmp"
    fail "could not move the copy of $src into $dest"
  fi
}

install_tree "/lib/modules/$kver" "$modules_dir"
install_tree "/usr/src/kernels/$kver" "$kernels_dir"
say "kernel $kver ready on the modules volume"
