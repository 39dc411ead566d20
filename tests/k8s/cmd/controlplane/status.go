package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
)

// status exits 0 when the control plane in o.dir has started all components, its /readyz
// says ok and the fake nodes are Ready.
func status(o options) error {
	p := newPaths(o.dir)
	if _, err := os.Stat(p.ready); err != nil {
		return fmt.Errorf("components not started yet (%s missing)", p.ready)
	}
	cfg, err := restConfigFor(p.admin)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := c.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("/readyz: %s", body)
	}
	return nodesReady(ctx, c, o.nodes)
}
