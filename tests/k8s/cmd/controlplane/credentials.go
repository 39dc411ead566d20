package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// identity is one static-token user of the API server.
type identity struct {
	user, uid string
	groups    string // comma-separated, may be empty
	token     string
}

type tokens struct {
	admin, restricted, kcm, scheduler, kwok identity
}

// Restricted identity: a plain token user; the tests bind it to a Role/ClusterRole.
const (
	restrictedUser  = "leakhound-restricted"
	restrictedGroup = "leakhound:restricted"
)

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// writeCredentials writes the service-account signing key (kept across starts) and a fresh
// static token file.
func writeCredentials(p paths) (tokens, error) {
	if _, err := os.Stat(p.saKey); errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return tokens{}, err
		}
		der := x509.MarshalPKCS1PrivateKey(key)
		if err := os.WriteFile(p.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return tokens{}, err
		}
	}
	t := tokens{
		admin:      identity{user: "leakhound-admin", uid: "uid-admin", groups: "system:masters", token: randomToken()},
		restricted: identity{user: restrictedUser, uid: "uid-restricted", groups: restrictedGroup, token: randomToken()},
		// The bootstrap RBAC policy already grants these two users what they need.
		kcm:       identity{user: "system:kube-controller-manager", uid: "uid-kcm", token: randomToken()},
		scheduler: identity{user: "system:kube-scheduler", uid: "uid-scheduler", token: randomToken()},
		// KWOK plays every kubelet; it gets full rights rather than per-node identities.
		kwok: identity{user: "kwok-controller", uid: "uid-kwok", groups: "system:masters", token: randomToken()},
	}
	var csv []byte
	for _, id := range []identity{t.admin, t.restricted, t.kcm, t.scheduler, t.kwok} {
		line := fmt.Sprintf("%s,%s,%s", id.token, id.user, id.uid)
		if id.groups != "" {
			line += fmt.Sprintf(",%q", id.groups)
		}
		csv = append(csv, line+"\n"...)
	}
	return t, os.WriteFile(p.tokens, csv, 0o600)
}

// caFromServingCert extracts the self-signed CA that kube-apiserver wrote after its serving
// certificate in apiserver.crt (the second PEM block; the first one when there is only one).
func caFromServingCert(certFile string) ([]byte, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no certificate in %s", certFile)
	}
	return pem.EncodeToMemory(blocks[len(blocks)-1]), nil
}

func writeKubeconfigs(p paths, server string, t tokens) error {
	ca, err := caFromServingCert(p.pki + "/apiserver.crt")
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.caCert, ca, 0o644); err != nil {
		return err
	}
	write := func(path string, id identity, mode os.FileMode) error {
		cfg := clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"leakhound": {Server: server, CertificateAuthorityData: ca}},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{id.user: {Token: id.token}},
			Contexts:       map[string]*clientcmdapi.Context{"leakhound": {Cluster: "leakhound", AuthInfo: id.user, Namespace: "default"}},
			CurrentContext: "leakhound",
		}
		tmp := path + ".tmp"
		if err := clientcmd.WriteToFile(cfg, tmp); err != nil {
			return err
		}
		if err := os.Chmod(tmp, mode); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	for _, w := range []struct {
		path string
		id   identity
	}{{p.kcm, t.kcm}, {p.scheduler, t.scheduler}, {p.kwok, t.kwok}, {p.restricted, t.restricted}, {p.admin, t.admin}} {
		if err := write(w.path, w.id, 0o600); err != nil {
			return err
		}
	}
	return os.WriteFile(p.restrictedTokenFile, []byte(t.restricted.token+"\n"), 0o600)
}
