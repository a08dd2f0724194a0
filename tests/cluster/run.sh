#!/usr/bin/env bash
# Install cssr-deploy into a real OpenShift cluster, run the pipeline once with tkn, and check the outcome.
#
# For a user with a cluster, logged in with `oc` as a cluster administrator; CI never runs it (it has no
# cluster). Prerequisites are the README's: OpenShift Pipelines with Triggers, the SR-IOV Network Operator,
# ReadWriteMany storage, the internal registry, and your settings in settings.yaml.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tests/cluster/run.sh [--no-install] [--no-build] [--twice] [--timeout SECONDS] [-p NAME=VALUE]...

  1. installs: `oc new-project` (when missing), `oc apply -k .`, the trigger's Secret (a random token);
     the SSR API Secret is made from $CSSR_SSR_PASSWORD_FILE (user $CSSR_SSR_USERNAME, default admin)
     when it does not exist yet
  2. builds the tasks image: `oc start-build cssr-tasks --from-repo=.`, and waits for the pool watcher
     and the EventListener
  3. starts cssr-deploy with tkn, with your settings (-p overrides one for this run), and waits
  4. checks: the run Succeeded; its results; the StatefulSet ready; cssr-deploy-state records the run's
     kernel set, which covers every target node's kernel; the cssr-init image is in the registry
  With --twice, runs again and checks that the second run built nothing (the when guard skipped
  build-cssr-init) and kept the revision.
  On failure it prints what to look at. The namespace is the one in kustomization.yaml.

  --no-install   skip step 1 (the suite is installed already)
  --no-build     skip the image build (ImageStreamTag cssr-tasks:0.1.0 exists already)
  --timeout S    the PipelineRun's timeout, in seconds (default 10800)
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NAMESPACE=$(sed -n 's/^namespace: *//p' "$REPO/kustomization.yaml")
TIMEOUT=10800
INSTALL=1
BUILD=1
TWICE=0
PARAMS=()
RUN=""

while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --twice) TWICE=1 ;;
    --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
    -p) PARAMS+=(-p "${2:?-p needs NAME=VALUE}"); shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[cluster-check] %s\n' "$*"; }
ns() { oc -n "$NAMESPACE" "$@"; }

hints() {
  printf '\n[cluster-check] what to look at:\n'
  if [ -n "$RUN" ]; then
    ns get taskruns -l "tekton.dev/pipelineRun=$RUN" -o jsonpath='{range .items[*]}{.metadata.labels.tekton\.dev/pipelineTask}{"\t"}{.status.conditions[0].reason}{"\t"}{.status.conditions[0].message}{"\n"}{end}' 2>/dev/null | sed 's/^/  /' || true
    cat <<EOF
  tkn pipelinerun describe $RUN -n $NAMESPACE      # tasks, status, results
  tkn pipelinerun logs $RUN -n $NAMESPACE          # every step's log; -t <task> for one task
EOF
  fi
  cat <<EOF
  oc get pods,pvc -n $NAMESPACE                    # Pending or ImagePullBackOff pods, a Pending modules claim
  oc get events -n $NAMESPACE --sort-by=.lastTimestamp | tail -20
  oc describe statefulset cssr -n $NAMESPACE; oc logs -n $NAMESPACE cssr-0 --all-containers
  oc get mcp; oc get sriovnetworknodestates -n openshift-sriov-network-operator
  oc logs -n $NAMESPACE deploy/cssr-watch-pools; oc logs -n $NAMESPACE deploy/el-cssr-deploy
  README.md, "Troubleshooting": the symptoms and their fixes
EOF
}

fail() {
  printf '[cluster-check] FAIL: %s\n' "$*" >&2
  trap - ERR
  hints
  exit 1
}

trap 'fail "command failed (line $LINENO): $BASH_COMMAND"' ERR

param_default() {
  ns get pipeline cssr-deploy -o jsonpath="{.spec.params[?(@.name==\"$1\")].default}"
}

result() {
  ns get pipelinerun "$RUN" -o jsonpath="{.status.results[?(@.name==\"$1\")].value}"
}

task_result() {
  ns get taskruns -l "tekton.dev/pipelineRun=$RUN,tekton.dev/pipelineTask=$1" \
    -o jsonpath="{.items[0].status.results[?(@.name==\"$2\")].value}"
}

# -- 0. the tools and the cluster -----------------------------------------------------------------------

for tool in oc tkn openssl; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
[ -n "$NAMESPACE" ] || { echo "no namespace: in $REPO/kustomization.yaml" >&2; exit 2; }
log "cluster $(oc whoami --show-server) as $(oc whoami), namespace $NAMESPACE"
[ "$(oc auth can-i create clusterrolebindings)" = yes ] || fail "the install needs a cluster administrator"
oc get crd pipelines.tekton.dev eventlisteners.triggers.tekton.dev >/dev/null \
  || fail "OpenShift Pipelines (with Triggers) is not installed"
registry=$(oc get configs.imageregistry.operator.openshift.io cluster -o jsonpath='{.spec.managementState}' 2>/dev/null || true)
[ "$registry" = Managed ] || log "warning: the internal image registry is '${registry:-absent}', not Managed: the tasks image and cssr-init cannot be stored"

# -- 1. install ---------------------------------------------------------------------------------------------

if [ "$INSTALL" = 1 ]; then
  oc get namespace "$NAMESPACE" >/dev/null 2>&1 || oc new-project "$NAMESPACE" --skip-config-write >/dev/null
  log "oc apply -k $REPO"
  oc apply -k "$REPO"
  if ! ns get secret cssr-trigger-secret >/dev/null 2>&1; then
    openssl rand -hex 32 | tr -d '\n' | ns create secret generic cssr-trigger-secret --from-file=token=/dev/stdin >/dev/null
    log "created Secret cssr-trigger-secret with a random token"
  fi
  credentials=$(param_default credentials-secret)
  if ! ns get secret "$credentials" >/dev/null 2>&1; then
    [ -n "${CSSR_SSR_PASSWORD_FILE:-}" ] || fail "Secret $NAMESPACE/$credentials (the SSR API user) is missing: set CSSR_SSR_PASSWORD_FILE (and CSSR_SSR_USERNAME), or create it (README, Install)"
    ns create secret generic "$credentials" --from-literal=username="${CSSR_SSR_USERNAME:-admin}" \
      --from-file=password="$CSSR_SSR_PASSWORD_FILE" >/dev/null
    log "created Secret $credentials"
  fi
fi

# -- 2. the tasks image, the watcher, the EventListener -------------------------------------------------------

if [ "$BUILD" = 1 ]; then
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then source=(--from-repo="$REPO"); else source=(--from-dir="$REPO"); fi
  log "building the tasks image (oc start-build cssr-tasks ${source[*]})"
  ns start-build cssr-tasks "${source[@]}" --follow --wait || fail "the tasks image did not build: oc logs -n $NAMESPACE bc/cssr-tasks"
fi
ns get imagestreamtag cssr-tasks:0.1.0 >/dev/null || fail "ImageStreamTag cssr-tasks:0.1.0 does not exist: build it (drop --no-build)"
ns rollout status deployment/cssr-watch-pools --timeout=300s || fail "the pool watcher did not become ready"
ns wait eventlistener/cssr-deploy --for=condition=Ready --timeout=300s >/dev/null || fail "the EventListener did not become ready"
log "the pool watcher and the EventListener are ready"

# -- 3. run ---------------------------------------------------------------------------------------------------

start_and_wait() {
  local out status reason states last_states=""
  out=$(tkn pipeline start cssr-deploy -n "$NAMESPACE" -s cssr-deploy --use-param-defaults \
    -w name=modules,claimName=modules \
    -w "name=build-context,volumeClaimTemplateFile=$REPO/tests/cluster/build-context.yaml" \
    --pipeline-timeout "${TIMEOUT}s" --prefix-name cssr-deploy-check ${PARAMS[@]+"${PARAMS[@]}"})
  RUN=$(printf '%s\n' "$out" | sed -n 's/^PipelineRun started: *//p')
  [ -n "$RUN" ] || fail "tkn did not say which PipelineRun it started: $out"
  log "started PipelineRun $RUN (follow it: tkn pipelinerun logs $RUN -f -n $NAMESPACE)"
  local deadline=$((SECONDS + TIMEOUT + 300))
  while :; do
    status=$(ns get pipelinerun "$RUN" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')
    reason=$(ns get pipelinerun "$RUN" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].reason}')
    states=$(ns get taskruns -l "tekton.dev/pipelineRun=$RUN" -o jsonpath='{range .items[*]}{.metadata.labels.tekton\.dev/pipelineTask}={.status.conditions[0].reason} {end}')
    if [ "$states" != "$last_states" ]; then
      log "${reason:-Pending}: $states"
      last_states=$states
    fi
    case "$status" in
      True) log "PipelineRun $RUN: $reason"; return 0 ;;
      False) fail "PipelineRun $RUN ended $reason: $(ns get pipelinerun "$RUN" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].message}')" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "PipelineRun $RUN did not finish within ${TIMEOUT}s"
    sleep 15
  done
}

# -- 4. check -------------------------------------------------------------------------------------------------

check_outcome() {
  local set_id image revision replicas ready recorded kernels selector kernel registry
  set_id=$(result kernel-set-id)
  image=$(result init-image)
  revision=$(result statefulset-revision)
  [[ $set_id =~ ^[0-9a-f]{12}$ ]] || fail "result kernel-set-id is '$set_id', not 12 hex digits"
  [[ $image == */cssr-init:"$set_id" ]] || fail "result init-image is '$image', not the cssr-init image of kernel set $set_id"
  [ -n "$revision" ] || fail "result statefulset-revision is empty"
  log "results: kernel-set-id $set_id, init-image $image, statefulset-revision $revision"

  ns rollout status statefulset/cssr --timeout=120s >/dev/null || fail "StatefulSet cssr is not rolled out"
  replicas=$(ns get statefulset cssr -o jsonpath='{.spec.replicas}')
  ready=$(ns get statefulset cssr -o jsonpath='{.status.readyReplicas}')
  [ "${ready:-0}" = "$replicas" ] || fail "StatefulSet cssr: ${ready:-0}/$replicas pods ready"
  [ "$(ns get statefulset cssr -o jsonpath='{.status.updateRevision}')" = "$revision" ] \
    || fail "StatefulSet cssr runs another revision than the run reported ($revision)"
  log "StatefulSet cssr: $ready/$replicas pods ready on $revision"

  recorded=$(ns get configmap cssr-deploy-state -o jsonpath='{.data.kernel-set-id}')
  kernels=$(ns get configmap cssr-deploy-state -o jsonpath='{.data.kernel-versions}')
  [ "$recorded" = "$set_id" ] || fail "cssr-deploy-state records kernel set '$recorded', the run deployed $set_id"
  selector=$(param_default node-selector)
  for kernel in $(oc get nodes -l "$selector" -o jsonpath='{range .items[*]}{.status.nodeInfo.kernelVersion}{"\n"}{end}' | sort -u); do
    case "$kernels" in
      *"\"$kernel\""*) ;;
      *) fail "node kernel $kernel (nodes $selector) is not in the deployed kernel set $kernels" ;;
    esac
  done
  log "cssr-deploy-state: kernel set $recorded $kernels covers every node of $selector"

  registry=$(param_default image-registry)
  if [ "$registry" = image-registry.openshift-image-registry.svc:5000 ]; then
    ns get imagestreamtag "cssr-init:$set_id" >/dev/null || fail "ImageStreamTag cssr-init:$set_id is missing"
    log "ImageStreamTag cssr-init:$set_id exists"
  fi
}

start_and_wait
check_outcome
if [ "$TWICE" = 1 ]; then
  first_revision=$(result statefulset-revision)
  log "running again: nothing should be built, and the revision should stay $first_revision"
  start_and_wait
  check_outcome
  [ "$(task_result check-cssr-init exists)" = true ] || fail "the second run did not find the cssr-init image"
  [ -z "$(ns get taskruns -l "tekton.dev/pipelineRun=$RUN,tekton.dev/pipelineTask=build-cssr-init" -o name)" ] \
    || fail "the second run ran build-cssr-init although its when guard should have skipped it"
  [ "$(task_result build-kmods built-kernels)" = "[]" ] || fail "the second run built modules again: $(task_result build-kmods built-kernels)"
  [ "$(result statefulset-revision)" = "$first_revision" ] || fail "the second run made a new StatefulSet revision"
  log "the second run built nothing and kept revision $first_revision"
fi
log "PASS: cssr-deploy is installed and deployed the router in namespace $NAMESPACE"
