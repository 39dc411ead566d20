package main

import (
	"context"

	"github.com/spf13/pflag"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// prepareControllerManager builds kube-controller-manager's configuration. It runs every
// default controller (deployment, replicaset, disruption, node-lifecycle, serviceaccount,
// namespace, garbage collector, HPA, ...) without leader election and without its own
// HTTPS endpoint (--secure-port=0).
func prepareControllerManager(ctx context.Context, p paths) (func(context.Context) error, error) {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	all, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	named := s.Flags(all, disabled, aliases)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	s.ParsedFlags = &named
	args := []string{
		"--kubeconfig=" + p.kcm,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		// React quickly in tests (defaults: 5s / 50s).
		"--node-monitor-period=2s",
		"--node-monitor-grace-period=40s",
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	// The feature gates and versions are shared with kube-apiserver in this process and were
	// set when its flags were applied.
	c, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return kcmapp.Run(ctx, c.Complete()) }, nil
}

// prepareScheduler builds kube-scheduler's configuration (default profile, no leader
// election, no HTTPS endpoint).
func prepareScheduler(ctx context.Context, p paths) (func(context.Context) error, error) {
	opts := schedoptions.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + p.scheduler,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		err := schedapp.Run(ctx, cc, sched)
		if ctx.Err() != nil {
			return nil // Run always returns an error ("finished without leader elect")
		}
		return err
	}, nil
}
