// The workload CRDs the e2e tests install (JobSet, Kubeflow TrainJob, KubeRay RayJob and
// RayCluster), taken from these pinned module sources by scripts/build-control-plane.sh
// (nothing here is built; the Kubeflow training-operator is built from tools/training-operator).
module carbontrack.dev/tools/workload-crds

go 1.26.8

require (
	github.com/kubeflow/trainer/v2 v2.0.0
	github.com/ray-project/kuberay/ray-operator v1.4.0
	sigs.k8s.io/jobset v0.8.2
)
