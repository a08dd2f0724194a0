#!/bin/sh
# Builds the cssr-init image from the context `cssr-tasks build-init-image` wrote, and pushes it.
#
# The one buildah invocation of the cssr-build-init-image Task: its build step runs this file from
# the context directory, and tests/images runs the same file with the same variables.
#
# Environment (nothing else is read):
#   CONTEXT_DIR                  the build context: Containerfile and cssr-init-entrypoint.sh (required)
#   IMAGE                        repository:tag to build and push (required)
#   PARAM_TLS_VERIFY             true (default), false (also allows plain HTTP), or the path of a CA bundle
#   PARAM_DOCKER_CONFIG          a docker config.json, or a directory holding config.json or .dockerconfigjson
#   WORKSPACE_DOCKERCONFIG_PATH  the dockerconfig workspace, used when PARAM_DOCKER_CONFIG is empty; with
#                                neither, buildah reads $HOME/.docker/config.json (Tekton's ServiceAccount secrets)
#   PARAM_STORAGE_DRIVER         containers-storage driver, default vfs (needs no privilege and no fuse)
#   STORAGE_ROOT, STORAGE_RUNROOT  where buildah keeps images (default: its own, /var/lib/containers)
#   BUILDAH_ISOLATION            default chroot; the Containerfile has no RUN, so nothing is executed
# Writes the digest of the pushed manifest to $CONTEXT_DIR/.pushed-digest.
set -eu
: "${CONTEXT_DIR:?CONTEXT_DIR must name the build context}"
: "${IMAGE:?IMAGE must name the repository:tag to push}"

# buildah with the storage flags; in ${VAR:+... "$VAR"} the inner quotes keep a path whole.
storage_buildah() {
  buildah --storage-driver "${PARAM_STORAGE_DRIVER:-vfs}" \
    ${STORAGE_ROOT:+--root "$STORAGE_ROOT"} ${STORAGE_RUNROOT:+--runroot "$STORAGE_RUNROOT"} "$@"
}

# "$@" becomes the registry flags that bud (pulling the Driver Toolkit images) and push share.
tls=${PARAM_TLS_VERIFY:-true}
case $tls in
  true | "") set -- --tls-verify=true ;;
  false) set -- --tls-verify=false ;;
  *)
    # buildah trusts the *.crt files of a directory, on top of the system's CAs.
    certs=$(mktemp -d)
    trap 'rm -rf "$certs"' EXIT
    cp "$tls" "$certs/ca.crt"
    set -- --tls-verify=true --cert-dir "$certs"
    ;;
esac

config=${PARAM_DOCKER_CONFIG:-${WORKSPACE_DOCKERCONFIG_PATH:-}}
if [ -n "$config" ]; then
  for candidate in "$config" "$config/config.json" "$config/.dockerconfigjson"; do
    if [ -f "$candidate" ]; then
      set -- "$@" --authfile "$candidate"
      break
    fi
  done
fi

digest_file=$CONTEXT_DIR/.pushed-digest
rm -f "$digest_file"
echo "[build-init-image] building $IMAGE from $CONTEXT_DIR/Containerfile"
storage_buildah bud "$@" --isolation "${BUILDAH_ISOLATION:-chroot}" \
  -f "$CONTEXT_DIR/Containerfile" -t "$IMAGE" "$CONTEXT_DIR"
echo "[build-init-image] pushing $IMAGE"
storage_buildah push "$@" --digestfile "$digest_file" "$IMAGE" "docker://$IMAGE"
echo "[build-init-image] pushed $IMAGE@$(cat "$digest_file")"
