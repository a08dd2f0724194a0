#!/bin/sh
# Builds the cssr-init image from the context `cssr-tasks build-init-image` wrote, and pushes it.
#
# The one buildah invocation of the cssr-build-init-image Task: its build step runs this file from
# the context directory, and tests/images runs the same file with the same variables.
#
# The registry settings are not parsed here: the prepare step (Python) parsed tls-verify and found
# the docker config once, by the rules every task uses, and left them beside the Containerfile:
#   $CONTEXT_DIR/.tls-verify     true, false (also allows plain HTTP), or the absolute path of a CA bundle
#   $CONTEXT_DIR/.authfile       the login file to hand buildah (--authfile, for bud's pulls and the push):
#                                in the Task, the one prepare wrote in the pod's memory volume (the service
#                                account token for the cluster registry, the docker config's logins for
#                                the others); from a shell, the docker config; or empty: buildah reads its
#                                default $HOME/.docker/config.json (Tekton's ServiceAccount secrets)
# Environment (nothing else is read):
#   CONTEXT_DIR                  the build context: Containerfile and cssr-init-entrypoint.sh (required)
#   IMAGE                        repository:tag to build and push (required)
#   PARAM_STORAGE_DRIVER         containers-storage driver, default vfs (needs no privilege and no fuse)
#   STORAGE_ROOT, STORAGE_RUNROOT  where buildah keeps images (default: its own, /var/lib/containers)
#   BUILDAH_ISOLATION            default chroot; the Containerfile has no RUN, so nothing is executed
# Writes the digest of the pushed manifest to $CONTEXT_DIR/.pushed-digest.
set -eu
: "${CONTEXT_DIR:?CONTEXT_DIR must name the build context}"
: "${IMAGE:?IMAGE must name the repository:tag to push}"

fail() {
  echo "[build-init-image] error: $*" >&2
  exit 2
}

# buildah with the storage flags; in ${VAR:+... "$VAR"} the inner quotes keep a path whole.
storage_buildah() {
  buildah --storage-driver "${PARAM_STORAGE_DRIVER:-vfs}" \
    ${STORAGE_ROOT:+--root "$STORAGE_ROOT"} ${STORAGE_RUNROOT:+--runroot "$STORAGE_RUNROOT"} "$@"
}

[ -f "$CONTEXT_DIR/.tls-verify" ] || fail "$CONTEXT_DIR/.tls-verify is missing; run the prepare step (cssr-tasks build-init-image) first"
# Files without a trailing newline: read assigns the value and returns 1.
read -r tls < "$CONTEXT_DIR/.tls-verify" || :
authfile=
if [ -f "$CONTEXT_DIR/.authfile" ]; then read -r authfile < "$CONTEXT_DIR/.authfile" || :; fi

# "$@" becomes the registry flags that bud (pulling the Driver Toolkit images) and push share.
case $tls in
  true) set -- --tls-verify=true ;;
  false) set -- --tls-verify=false ;;
  /*)
    # buildah trusts the *.crt files of a directory, on top of the system's CAs.
    certs=$(mktemp -d)
    trap 'rm -rf "$certs"' EXIT
    cp "$tls" "$certs/ca.crt"
    set -- --tls-verify=true --cert-dir "$certs"
    ;;
  *) fail "$CONTEXT_DIR/.tls-verify holds '$tls', not true, false or an absolute CA bundle path; run the prepare step again" ;;
esac
if [ -n "$authfile" ]; then
  set -- "$@" --authfile "$authfile"
fi

digest_file=$CONTEXT_DIR/.pushed-digest
rm -f "$digest_file"
echo "[build-init-image] building $IMAGE from $CONTEXT_DIR/Containerfile"
storage_buildah bud "$@" --isolation "${BUILDAH_ISOLATION:-chroot}" \
  -f "$CONTEXT_DIR/Containerfile" -t "$IMAGE" "$CONTEXT_DIR"
echo "[build-init-image] pushing $IMAGE"
storage_buildah push "$@" --digestfile "$digest_file" "$IMAGE" "docker://$IMAGE"
echo "[build-init-image] pushed $IMAGE@$(cat "$digest_file")"
