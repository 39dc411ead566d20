package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func nodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// createNodes registers n fake nodes for KWOK. They carry no taint of their own, so ordinary
// workloads schedule on them without tolerations; the zones spread them for topology tests.
func createNodes(ctx context.Context, c kubernetes.Interface, n int) error {
	zones := []string{"zone-a", "zone-b", "zone-c"}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	for i := 0; i < n; i++ {
		name := nodeName(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Annotations: map[string]string{
					fakeNodeAnnotation:             "fake",
					"node.alpha.kubernetes.io/ttl": "0",
				},
				Labels: map[string]string{
					fakeNodeLabel:                   "true",
					"type":                          "kwok",
					"kubernetes.io/arch":            "amd64",
					"kubernetes.io/os":              "linux",
					"kubernetes.io/hostname":        name,
					"node-role.kubernetes.io/agent": "",
					"topology.kubernetes.io/zone":   zones[i%len(zones)],
				},
			},
			Spec: corev1.NodeSpec{ProviderID: "kwok://" + name},
			Status: corev1.NodeStatus{
				Capacity:    res,
				Allocatable: res,
				NodeInfo: corev1.NodeSystemInfo{
					Architecture:    "amd64",
					OperatingSystem: "linux",
					KubeletVersion:  "v1.36.3-kwok",
				},
			},
		}
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			_, err = c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				err = nil
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return nil
}

// nodesReady reports nil when n fake nodes exist, are Ready and carry no not-ready or
// unreachable taint (which node-lifecycle-controller removes once they are Ready).
func nodesReady(ctx context.Context, c kubernetes.Interface, n int) error {
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: fakeNodeLabel + "=true"})
	if err != nil {
		return err
	}
	if len(list.Items) < n {
		return fmt.Errorf("%d of %d fake nodes registered", len(list.Items), n)
	}
	for _, node := range list.Items {
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("node %s not Ready", node.Name)
		}
		for _, t := range node.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return fmt.Errorf("node %s still has taint %s", node.Name, t.Key)
			}
		}
	}
	return nil
}
