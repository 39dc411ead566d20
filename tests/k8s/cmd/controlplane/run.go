package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

func init() {
	// Several components apply the logging configuration; only the first call may do it.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

// paths of the files in the state directory.
type paths struct {
	dir, pki, etcd                   string
	tokens, saKey, caCert            string
	admin, restricted                string
	kcm, scheduler, kwok             string
	ready, port, restrictedTokenFile string
	pid                              string
}

func newPaths(dir string) paths {
	return paths{
		dir:                 dir,
		pki:                 filepath.Join(dir, "pki"),
		etcd:                filepath.Join(dir, "etcd"),
		tokens:              filepath.Join(dir, "pki", "tokens.csv"),
		saKey:               filepath.Join(dir, "pki", "sa.key"),
		caCert:              filepath.Join(dir, "pki", "ca.crt"),
		admin:               filepath.Join(dir, "admin.kubeconfig"),
		restricted:          filepath.Join(dir, "restricted.kubeconfig"),
		kcm:                 filepath.Join(dir, "pki", "controller-manager.kubeconfig"),
		scheduler:           filepath.Join(dir, "pki", "scheduler.kubeconfig"),
		kwok:                filepath.Join(dir, "pki", "kwok.kubeconfig"),
		ready:               filepath.Join(dir, "ready"),
		port:                filepath.Join(dir, "apiserver.port"),
		restrictedTokenFile: filepath.Join(dir, "restricted.token"),
		pid:                 filepath.Join(dir, "controlplane.pid"),
	}
}

// component is a long-running part of the control plane.
type component struct {
	name string
	done chan struct{}
	err  error
}

func run(o options) error {
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	started := time.Now()
	p := newPaths(o.dir)

	// A fresh cluster on every start: old kubeconfigs and etcd data go.
	for _, f := range []string{p.ready, p.admin, p.restricted, p.kcm, p.scheduler, p.kwok, p.port, p.restrictedTokenFile} {
		_ = os.Remove(f)
	}
	if err := os.RemoveAll(p.etcd); err != nil {
		return err
	}
	if err := os.MkdirAll(p.pki, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(p.pid, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(p.pid)
	toks, err := writeCredentials(p)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}

	// The API server's listener is opened here and handed over, so its port cannot be taken
	// between choosing and binding it.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1:%d: %w", o.port, err)
	}
	apiPort := ln.Addr().(*net.TCPAddr).Port

	// Components run until ctx is cancelled; the first one that fails cancels all.
	ctx, cancel := context.WithCancelCause(sigCtx)
	defer cancel(nil)
	var comps []*component
	var mu sync.Mutex
	start := func(name string, f func(context.Context) error) {
		c := &component{name: name, done: make(chan struct{})}
		mu.Lock()
		comps = append(comps, c)
		mu.Unlock()
		go func() {
			defer close(c.done)
			defer func() {
				if r := recover(); r != nil {
					c.err = fmt.Errorf("panic: %v", r)
					cancel(fmt.Errorf("%s: %w", name, c.err))
				}
			}()
			c.err = f(ctx)
			if ctx.Err() == nil {
				if c.err == nil {
					c.err = errors.New("exited")
				}
				cancel(fmt.Errorf("%s: %w", name, c.err))
			}
		}()
	}

	etcd, etcdURL, err := startEtcd(ctx, p.etcd)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	klog.Infof("leakhound-controlplane: etcd ready at %s after %s", etcdURL, time.Since(started).Round(time.Millisecond))

	apiRun, err := prepareAPIServer(ctx, o, p, ln, etcdURL)
	if err != nil {
		etcd.Close()
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := writeKubeconfigs(p, server, toks); err != nil {
		etcd.Close()
		return fmt.Errorf("kubeconfigs: %w", err)
	}
	start("kube-apiserver", apiRun)

	adminCfg, err := clientcmd.BuildConfigFromFlags("", p.admin)
	if err != nil {
		return err
	}
	adminCfg.QPS, adminCfg.Burst = 50, 100
	admin := kubernetes.NewForConfigOrDie(adminCfg)
	if err := waitReadyz(ctx, admin, 3*time.Minute); err != nil {
		return shutdown(p, cancel, comps, etcd, context.Cause(ctx), err)
	}
	if err := os.WriteFile(p.port, []byte(strconv.Itoa(apiPort)+"\n"), 0o644); err != nil {
		return err
	}
	klog.Infof("leakhound-controlplane: kube-apiserver ready at %s after %s", server, time.Since(started).Round(time.Millisecond))

	kcmRun, err := prepareControllerManager(ctx, p)
	if err != nil {
		return shutdown(p, cancel, comps, etcd, nil, fmt.Errorf("kube-controller-manager: %w", err))
	}
	start("kube-controller-manager", kcmRun)
	schedRun, err := prepareScheduler(ctx, p)
	if err != nil {
		return shutdown(p, cancel, comps, etcd, nil, fmt.Errorf("kube-scheduler: %w", err))
	}
	start("kube-scheduler", schedRun)
	kwokRun, err := prepareKwok(ctx, p)
	if err != nil {
		return shutdown(p, cancel, comps, etcd, nil, fmt.Errorf("kwok: %w", err))
	}
	start("kwok", kwokRun)

	if err := createNodes(ctx, admin, o.nodes); err != nil {
		return shutdown(p, cancel, comps, etcd, context.Cause(ctx), fmt.Errorf("nodes: %w", err))
	}
	if err := os.WriteFile(p.ready, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	klog.Infof("leakhound-controlplane: all components started after %s; admin kubeconfig %s", time.Since(started).Round(time.Millisecond), p.admin)

	<-ctx.Done()
	cause := context.Cause(ctx)
	if sigCtx.Err() != nil {
		cause = nil // a signal: a clean stop
	}
	return shutdown(p, cancel, comps, etcd, cause, nil)
}

// shutdown cancels every component, waits for them with a bound, then closes etcd.
func shutdown(p paths, cancel context.CancelCauseFunc, comps []*component, etcd interface{ Close() }, cause, err error) error {
	klog.Infof("leakhound-controlplane: shutting down (cause: %v, err: %v)", cause, err)
	_ = os.Remove(p.ready)
	cancel(context.Canceled)
	deadline := time.After(20 * time.Second)
	for _, c := range comps {
		select {
		case <-c.done:
		case <-deadline:
			klog.Warningf("leakhound-controlplane: %s did not stop in time", c.name)
		}
	}
	closed := make(chan struct{})
	go func() { etcd.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		klog.Warning("leakhound-controlplane: etcd did not stop in time")
	}
	klog.Flush()
	if err != nil {
		return err
	}
	return cause
}

func waitReadyz(ctx context.Context, c kubernetes.Interface, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		body, err := c.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = string(body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz not ok: %s (%w)", last, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// restConfigFor loads a kubeconfig written by writeKubeconfigs.
func restConfigFor(path string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", path)
}
