#!/bin/sh
# kmod-build.sh PLAN_DIR: runs the kernel module builder once for every kernel of a build plan.
#
# `cssr-tasks build-kmods` writes the plan (and a copy of this script) into its staging
# directory on the modules volume, holding the volume's build lock; it runs this script itself,
# or the Task's kmod-builder step runs it (that image has no Python). Locking, verification,
# signing and the rename into place stay in the tested Python; this script only runs the builder.
#
# PLAN_DIR/plan, one item per line:
#   root ROOT                the builder's root: it reads ROOT/usr/lib/modules/<kver> and
#                            ROOT/usr/src/kernels/<kver> (the PoC builder's fixed paths)
#   trees DIR                the cssr-init layout, DIR/modules/<kver> and DIR/kernels/<kver>; empty
#                            when the trees are already at the builder's paths (the PoC's mounts)
#   kernel KVER OUTPUT       build for KVER; the builder leaves its modules in the directory OUTPUT
# PLAN_DIR/argv: the builder command, one argument per line.
#
# Per kernel: when the builder's paths lack the kernel, they become a private view of the trees
# (a directory of links to DIR/modules/<kver>/* without dpdk/, and a link to DIR/kernels/<kver>),
# so the builder's output lands in the view, never in the live tree; the builder runs with
# KERNEL_VERSION=<kver> and a `uname` first on PATH that answers -r with <kver>; its output
# directory moves to PLAN_DIR/<kver>; a failure leaves PLAN_DIR/<kver>.failed holding the reason.
# PLAN_DIR/heartbeat is touched every 5 s while this script runs, PLAN_DIR/exited is written when every
# builder has ended. Exit status: 0 when every kernel built, 1 otherwise.
set -eu

plan_dir=${1:?usage: kmod-build.sh PLAN_DIR}
if [ ! -f "$plan_dir/plan" ]; then
  echo "kmod-build: no build plan in $plan_dir; run cssr-tasks build-kmods prepare first" >&2
  exit 1
fi

root=/
trees=
while read -r key value _rest; do
  case $key in
    root) root=$value ;;
    trees) trees=$value ;;
  esac
done < "$plan_dir/plan"
root=${root%/}
real_uname=$(command -v uname)

set --
while IFS= read -r arg; do
  set -- "$@" "$arg"
done < "$plan_dir/argv"

# A heartbeat while this script (and so its builder) lives: no run takes the lease over while it is
# fresh, even when the process that holds the lock is gone (build_lock.py). The first beat is
# written before any builder starts; the exit mark only once every builder has ended.
rm -f "$plan_dir/exited"
touch "$plan_dir/heartbeat"
(
  while kill -0 $$ 2>/dev/null; do
    touch "$plan_dir/heartbeat"
    sleep 5
  done
) >/dev/null 2>&1 &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null || true' EXIT

failed() {  # KERNEL REASON
  printf '%s\n' "$2" > "$plan_dir/$1.failed"
  echo "kmod-build: $1: $2" >&2
  return 1
}

# view KERNEL: makes the builder's paths show the kernel's trees, listing what it made in
# PLAN_DIR/.view-KERNEL for unview; on failure, $why says what went wrong.
view() {
  modules_view=$root/usr/lib/modules/$1
  kernels_view=$root/usr/src/kernels/$1
  made=$plan_dir/.view-$1
  : > "$made"
  if [ -z "$trees" ]; then
    return 0
  fi
  if [ ! -e "$modules_view" ] && [ ! -L "$modules_view" ]; then
    if [ ! -d "$trees/modules/$1" ]; then
      why="no kernel tree $trees/modules/$1; lay out the kernel trees first"
      return 1
    fi
    mkdir -p "$modules_view" || { why="could not create $modules_view"; return 1; }
    printf '%s\n' "$modules_view" >> "$made"
    for entry in "$trees/modules/$1"/* "$trees/modules/$1"/.[!.]*; do
      name=${entry##*/}
      case $name in dpdk | '*' | '.[!.]*') continue ;; esac
      ln -s "$entry" "$modules_view/$name" || { why="could not link $entry into $modules_view"; return 1; }
    done
  fi
  if [ ! -e "$kernels_view" ] && [ ! -L "$kernels_view" ]; then
    if [ ! -d "$trees/kernels/$1" ]; then
      why="no kernel tree $trees/kernels/$1; lay out the kernel trees first"
      return 1
    fi
    mkdir -p "${kernels_view%/*}" && ln -s "$trees/kernels/$1" "$kernels_view" \
      || { why="could not link $trees/kernels/$1 to $kernels_view"; return 1; }
    printf '%s\n' "$kernels_view" >> "$made"
  fi
}

# unview KERNEL: removes what view made (links, and folders of links: nothing of the trees).
unview() {
  if [ -f "$plan_dir/.view-$1" ]; then
    while IFS= read -r path; do
      rm -rf "$path"
    done < "$plan_dir/.view-$1"
    rm -f "$plan_dir/.view-$1"
  fi
}

build() {  # KERNEL OUTPUT BUILDER...
  kernel=$1 output=$2
  shift 2
  stage=$plan_dir/$kernel
  rm -rf "$stage" "$stage.failed"
  why=
  if ! view "$kernel"; then
    unview "$kernel"
    failed "$kernel" "$why"
    return 1
  fi
  shim=$plan_dir/.uname-$kernel
  mkdir -p "$shim"
  printf '#!/bin/sh\ncase "$*" in -r | --kernel-release) echo %s; exit 0 ;; esac\nexec %s "$@"\n' \
    "'$kernel'" "'$real_uname'" > "$shim/uname"
  chmod 0755 "$shim/uname"
  rm -rf "$output"
  echo "kmod-build: building for kernel $kernel: $*"
  if KERNEL_VERSION=$kernel PATH=$shim:$PATH "$@" < /dev/null; then
    rc=0
  else
    rc=$?
  fi
  rm -rf "$shim"
  if [ "$rc" -ne 0 ]; then
    result="the builder exited with status $rc"
  elif [ ! -d "$output" ]; then
    result="the builder exited 0 but left no directory $output"
  elif ! mv "$output" "$stage"; then
    result="could not move $output to $stage"
  else
    result=
  fi
  unview "$kernel"
  if [ -n "$result" ]; then
    failed "$kernel" "$result"
    return 1
  fi
  echo "kmod-build: kernel $kernel built; output staged in $stage"
}

status=0
while read -r key kernel output; do
  [ "$key" = kernel ] || continue
  build "$kernel" "$output" "$@" < /dev/null || status=1
done < "$plan_dir/plan"
touch "$plan_dir/exited"
exit "$status"
