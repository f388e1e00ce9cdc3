package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skeinnet/skein/api"
)

// FuzzPluginInput: whatever a runtime hands the plugin (network config on
// stdin, CNI_ARGS, CNI_CONTAINERID) it answers with a valid config and pod,
// or with a CNI error of code 6 (undecodable) or 7 (invalid, naming the
// key); never a panic, and never a pod that the agent would refuse.
func FuzzPluginInput(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","socket":"/run/skein/skeind.sock"}`), "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", "0123456789abcdef")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"n","timeout":"3s","logLevel":"debug","args":{"cni":{"labels":[{"key":"app","value":"web"}]},"skein":{"ports":[{"name":"http","port":80,"protocol":"udp"}]}}}`), "K8S_POD_NAMESPACE=a/b", "c")
	f.Add([]byte(`{"name":"n","args":{"org.apache.mesos":{"network_info":{"labels":{"labels":[{"key":"k","value":"v"}]}}}},"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]}`), "K8S_POD_NAME=;;=;x", "")
	f.Add([]byte(`{"name":"n","socket":"relative","timeout":"-1s"}`), "", "id")
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs, containerID string) {
		conf, err := loadConf(stdin)
		if err != nil {
			checkCNIError(t, err)
			return
		}
		if !filepath.IsAbs(conf.Socket) || conf.Timeout <= 0 || conf.CNIVersion == "" {
			t.Fatalf("loadConf() accepted socket %q timeout %v version %q", conf.Socket, conf.Timeout, conf.CNIVersion)
		}
		pod, err := podInfo(conf, cniArgs, containerID)
		if err != nil {
			checkCNIError(t, err)
			return
		}
		if err := api.ValidatePodNamespace(pod.Namespace); err != nil {
			t.Fatalf("podInfo() namespace: %v", err)
		}
		if pod.Name != "" {
			if err := api.ValidatePodName(pod.Name); err != nil && parseCNIArgs(cniArgs)["K8S_POD_NAME"] != "" {
				t.Fatalf("podInfo() accepted K8S_POD_NAME that the agent refuses: %v", err)
			}
		}
		for _, p := range pod.Ports {
			if p.Name == "" || p.Port < 1 || p.Port > 65535 || (p.Protocol != "TCP" && p.Protocol != "UDP" && p.Protocol != "SCTP") {
				t.Fatalf("podInfo() accepted port %+v", p)
			}
		}
	})
}

// checkCNIError fails unless err is a CNI error of code 6, or of code 7
// naming the key at fault.
func checkCNIError(t *testing.T, err error) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v is %T, want *types.Error", err, err)
	}
	switch te.Code {
	case types.ErrDecodingFailure:
	case types.ErrInvalidNetworkConfig:
		if !strings.Contains(te.Msg, "invalid network config \"") && !strings.Contains(te.Msg, "invalid CNI_ARGS K8S_POD_") {
			t.Fatalf("code 7 without the key: %v", te)
		}
	default:
		t.Fatalf("error code %d (%v), want 6 or 7", te.Code, te)
	}
	if te.Msg == "" {
		t.Fatal("error without a message")
	}
}
