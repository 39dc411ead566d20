package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	configv1alpha1 "sigs.k8s.io/kwok/pkg/apis/config/v1alpha1"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/apis/v1alpha1"
	"sigs.k8s.io/kwok/pkg/client/clientset/versioned"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	kwokclient "sigs.k8s.io/kwok/pkg/utils/client"
)

// Nodes that KWOK manages carry this annotation.
const (
	fakeNodeAnnotation = "kwok.x-k8s.io/node"
	fakeNodeLabel      = "leakhound.dev/fake-node"
)

func parseStage(raw string) (*internalversion.Stage, error) {
	var s v1alpha1.Stage
	if err := yaml.Unmarshal([]byte(raw), &s); err != nil {
		return nil, err
	}
	v1alpha1.SetObjectDefaults_Stage(&s)
	return internalversion.ConvertToInternalStage(&s)
}

// prepareKwok wires KWOK's fake-kubelet controller the way `kwok` (pkg/kwok/cmd/root.go)
// does, with the "fast" stages that kwokctl installs by default: nodes become Ready and keep a
// Lease heartbeat; pods bound to them become Running and Ready at once; deleted pods go.
func prepareKwok(ctx context.Context, p paths) (func(context.Context) error, error) {
	defaults := &configv1alpha1.KwokConfiguration{}
	configv1alpha1.SetObjectDefaults_KwokConfiguration(defaults)
	conf, err := internalversion.ConvertToInternalKwokConfiguration(defaults)
	if err != nil {
		return nil, err
	}

	stages := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	for _, raw := range []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		s, err := parseStage(raw)
		if err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
		stages[s.Spec.ResourceRef] = append(stages[s.Spec.ResourceRef], s)
	}

	cs, err := kwokclient.NewClientset("", p.kwok)
	if err != nil {
		return nil, err
	}
	restConfig, err := cs.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	restConfig.QPS, restConfig.Burst = 100, 200
	dynamicClient, err := cs.ToDynamicClient()
	if err != nil {
		return nil, err
	}
	restMapper, err := cs.ToRESTMapper()
	if err != nil {
		return nil, err
	}
	restClient, err := rest.RESTClientFor(restConfig)
	if err != nil {
		return nil, err
	}
	typedClient, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	typedKwokClient, err := versioned.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	id, err := controllers.Identity()
	if err != nil {
		return nil, err
	}
	o := conf.Options
	// Pod IPs on loopback (127.1.0.0/16 by default): a test can play a pod's server by listening
	// on the pod IP the cluster reports, which is what pod discovery tests need.
	o.CIDR = "127.1.0.1/16"
	if v := os.Getenv("LEAKHOUND_K8S_POD_CIDR"); v != "" {
		o.CIDR = v
	}
	ctr, err := controllers.NewController(controllers.Config{
		Clock:                             clock.RealClock{},
		DynamicClient:                     dynamicClient,
		RESTClient:                        restClient,
		RESTMapper:                        restMapper,
		ImpersonatingDynamicClient:        cs.ToImpersonatingDynamicClient(),
		ImpersonatingTypedClient:          cs.ToImpersonatingTypedClient(),
		TypedClient:                       typedClient,
		TypedKwokClient:                   typedKwokClient,
		ManageNodesWithAnnotationSelector: fakeNodeAnnotation + "=fake",
		CIDR:                              o.CIDR,
		NodeIP:                            o.NodeIP,
		NodeName:                          o.NodeName,
		PodPlayStageParallelism:           o.PodPlayStageParallelism,
		NodePlayStageParallelism:          o.NodePlayStageParallelism,
		LocalStages:                       stages,
		NodeLeaseParallelism:              o.NodeLeaseParallelism,
		NodeLeaseDurationSeconds:          40,
		ID:                                id,
		PodsOnNodeSyncParallelism:         o.PodsOnNodeSyncParallelism,
		EnablePodsOnNodeSyncListPager:     o.EnablePodsOnNodeSyncListPager,
		EnablePodsOnNodeSyncStreamWatch:   o.EnablePodsOnNodeSyncStreamWatch,
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		ctx = kwoklog.NewContext(ctx, kwoklog.NewLogger(os.Stderr, kwoklog.LevelWarn))
		if err := ctr.Start(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}, nil
}
