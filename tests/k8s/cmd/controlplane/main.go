// Command controlplane runs a small but real Kubernetes control plane in ONE process for
// leakhound's integration tests: embedded etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler (all from k8s.io/kubernetes, linked as libraries) and KWOK's fake-kubelet
// controller, which turns a few fake Nodes Ready and drives pods bound to them to Running/Ready.
//
// Everything listens on 127.0.0.1 only.
//
//	controlplane run    --dir DIR [--port N] [--nodes N] [--v N]   foreground; SIGTERM/SIGINT stop it
//	controlplane status --dir DIR [--nodes N]                      exit 0 iff /readyz is ok and the fake nodes are Ready
//
// Files written under DIR: see tests/k8s/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// options shared by the subcommands.
type options struct {
	dir       string
	port      int
	nodes     int
	verbosity int
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s run|status --dir DIR [--port N] [--nodes N] [--v N]\n", filepath.Base(os.Args[0]))
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub := os.Args[1]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	o := options{}
	defDir := os.Getenv("LEAKHOUND_K8S_DIR")
	if defDir == "" {
		defDir = "/var/tmp/leakhound-k8s/run"
	}
	fs.StringVar(&o.dir, "dir", defDir, "state directory (kubeconfigs, certificates, etcd data)")
	fs.IntVar(&o.port, "port", 0, "kube-apiserver port on 127.0.0.1 (0: a free port)")
	fs.IntVar(&o.nodes, "nodes", 3, "number of fake (KWOK) nodes")
	fs.IntVar(&o.verbosity, "v", 0, "klog verbosity")
	_ = fs.Parse(os.Args[2:])
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		fatalf("dir: %v", err)
	}
	o.dir = abs

	switch sub {
	case "run":
		if err := run(o); err != nil {
			fatalf("controlplane: %v", err)
		}
	case "status":
		if err := status(o); err != nil {
			fmt.Fprintf(os.Stderr, "not ready: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("ready")
	default:
		usage()
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
