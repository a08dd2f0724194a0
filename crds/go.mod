// The pin file of the CRD schemas that the tests validate every manifest against.
// Each require names an upstream Go module and version; its `// crds:` comment lists the files
// (globs, relative to the module root) that `make crds` copies out of the module zip into
// .cache/crds/<module>/. go.sum verifies every zip. Nothing here is built.
//
// Versions: the newest releases of Tekton Pipelines (v1.15, the first line whose CRDs carry
// structural schemas is v0.70) and Triggers; SR-IOV operator v1.6.0; OpenShift's own APIs from
// the 4.22 development line, a superset of 4.16-4.21 for the fields the suite writes.
// Fleet engines (docs/fleet.md): Argo CD v3.5 (OpenShift GitOps' Application and ApplicationSet),
// Open Cluster Management v1.3 / its policy framework v0.19 (what ACM 2.14+ ships). The newer tags
// (OCM api v1.4+, policy v0.20) are refused by the Go module proxy; Argo CD v3.6 needs Go 1.27.
// Prometheus Operator v0.73.2 (PrometheusRule, ServiceMonitor: deploy/monitoring): an old line (spring 2024, about
// what OpenShift 4.16's monitoring runs), so that no field newer than an old cluster's CRD passes the tests.
// KMM's Module CRD is not pinned: the suite writes no KMM object.
module cssr-deploy/crds

go 1.22

require (
	github.com/tektoncd/pipeline v1.15.0 // crds: config/300-crds/*.yaml
	github.com/tektoncd/triggers v0.37.0 // crds: config/300-*.yaml
	github.com/k8snetworkplumbingwg/sriov-network-operator v1.6.0 // crds: config/crd/bases/*.yaml
	github.com/k8snetworkplumbingwg/network-attachment-definition-client v1.7.7 // crds: artifacts/networks-crd.yaml
	github.com/openshift/api v0.0.0-20260318185450-1f2fa3f09f4e // crds: machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_machineconfigs.crd.yaml, machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_machineconfigpools-Default.crd.yaml, machineconfiguration/v1/zz_generated.crd-manifests/0000_80_machine-config_01_kubeletconfigs.crd.yaml, security/v1/zz_generated.crd-manifests/*.crd.yaml, route/v1/zz_generated.crd-manifests/routes.crd.yaml, config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_imagedigestmirrorsets.crd.yaml, config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_imagetagmirrorsets.crd.yaml
	github.com/openshift/cluster-node-tuning-operator v0.0.0-20260209053755-f5fe4460e852 // crds: manifests/20-performance-profile.crd.yaml
	github.com/argoproj/argo-cd/v3 v3.5.8 // crds: manifests/crds/application-crd.yaml, manifests/crds/applicationset-crd.yaml
	open-cluster-management.io/api v1.3.0 // crds: work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml, cluster/v1beta1/0000_02_clusters.open-cluster-management.io_placements.crd.yaml
	open-cluster-management.io/governance-policy-propagator v0.19.0 // crds: deploy/crds/policy.open-cluster-management.io_policies.yaml, deploy/crds/policy.open-cluster-management.io_placementbindings.yaml
	github.com/prometheus-operator/prometheus-operator v0.73.2 // crds: example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml, example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
	open-cluster-management.io/config-policy-controller v0.19.0 // crds: deploy/crds/policy.open-cluster-management.io_configurationpolicies.yaml
)
