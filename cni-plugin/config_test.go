package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

func TestLoadConf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		want      *config
		wantCode  uint
		wantField string // must appear in the error message
	}{
		{
			name: "minimal",
			in:   `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni"}`,
			want: &config{CNIVersion: "1.1.0", Name: "skein", Socket: defaultSocket, Timeout: defaultTimeout,
				LogLevel: slog.LevelWarn, Valid: []api.Owner{}},
		},
		{
			name: "everything set, unknown keys tolerated",
			in: `{"cniVersion":"1.0.0","name":"skein","type":"skein-cni","socket":"/tmp/s.sock",
				"logFile":"/var/log/skein-cni.log","logLevel":"debug","timeout":"10s",
				"capabilities":{"portMappings":true,"bandwidth":true},
				"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},
				"ipam":{"type":"none"},"someVendorKey":{"x":[1,2]},"args":{"whatever":1}}`,
			want: &config{CNIVersion: "1.0.0", Name: "skein", Socket: "/tmp/s.sock", Timeout: 10 * time.Second,
				LogFile: "/var/log/skein-cni.log", LogLevel: slog.LevelDebug, Valid: []api.Owner{}},
		},
		{
			name: "no cniVersion means 0.1.0",
			in:   `{"name":"skein","type":"skein-cni"}`,
			want: &config{CNIVersion: "0.1.0", Name: "skein", Socket: defaultSocket, Timeout: defaultTimeout,
				LogLevel: slog.LevelWarn, Valid: []api.Owner{}},
		},
		{
			name: "gc valid attachments",
			in: `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni",
				"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
				"cni.dev/attachments":[{"containerID":"c1","ifname":"eth0"}]}`,
			want: &config{CNIVersion: "1.1.0", Name: "skein", Socket: defaultSocket, Timeout: defaultTimeout,
				LogLevel: slog.LevelWarn, ValidSet: true, Valid: []api.Owner{{ContainerID: "c1", IfName: "eth0"}}},
		},
		{
			name: "gc legacy key only",
			in: `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni",
				"cni.dev/attachments":[{"containerID":"c2","ifname":"net1"}]}`,
			want: &config{CNIVersion: "1.1.0", Name: "skein", Socket: defaultSocket, Timeout: defaultTimeout,
				LogLevel: slog.LevelWarn, ValidSet: true, Valid: []api.Owner{{ContainerID: "c2", IfName: "net1"}}},
		},
		{
			name: "gc empty list is set",
			in:   `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","cni.dev/valid-attachments":[]}`,
			want: &config{CNIVersion: "1.1.0", Name: "skein", Socket: defaultSocket, Timeout: defaultTimeout,
				LogLevel: slog.LevelWarn, ValidSet: true, Valid: []api.Owner{}},
		},
		{name: "malformed JSON", in: `{"cniVersion":"1.1.0",`, wantCode: types.ErrDecodingFailure},
		{name: "not an object", in: `[1,2]`, wantCode: types.ErrDecodingFailure},
		{name: "relative socket", in: `{"name":"n","socket":"run/skeind.sock"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"socket"`},
		{name: "socket not a string", in: `{"name":"n","socket":5}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"socket"`},
		{name: "bad timeout", in: `{"name":"n","timeout":"soon"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"timeout"`},
		{name: "timeout without unit", in: `{"name":"n","timeout":"10"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"timeout"`},
		{name: "negative timeout", in: `{"name":"n","timeout":"-1s"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"timeout"`},
		{name: "timeout as number", in: `{"name":"n","timeout":10}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"timeout"`},
		{name: "bad log level", in: `{"name":"n","logLevel":"loud"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"logLevel"`},
		{name: "relative log file", in: `{"name":"n","logFile":"cni.log"}`, wantCode: types.ErrInvalidNetworkConfig, wantField: `"logFile"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConf([]byte(tc.in))
			if tc.wantCode != 0 {
				assertCNIError(t, err, tc.wantCode, tc.wantField)
				return
			}
			if err != nil {
				t.Fatalf("loadConf() error = %v", err)
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(config{}), cmpopts.IgnoreFields(config{}, "plugin", "args")); d != "" {
				t.Errorf("loadConf() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestPodInfo(t *testing.T) {
	t.Parallel()
	const cid = "0123456789abcdef0123"
	tests := []struct {
		name      string
		args      string // the config's "args" value, or empty
		cniArgs   string
		want      api.PodInfo
		wantCode  uint
		wantField string
	}{
		{
			name: "nothing given",
			want: api.PodInfo{Namespace: "default", Name: "0123456789ab"},
		},
		{
			name:    "kubernetes CNI_ARGS with IgnoreUnknown and unknown keys",
			cniArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=" + cid + ";K8S_POD_UID=4f6c-11",
			want:    api.PodInfo{Namespace: "shop", Name: "web-0", UID: "4f6c-11"},
		},
		{
			name:    "unknown keys without IgnoreUnknown, odd pairs skipped",
			cniArgs: "K8S_POD_NAME=web-1;FOO=a=b;;junk;=x;K8S_POD_NAMESPACE=",
			want:    api.PodInfo{Namespace: "default", Name: "web-1"},
		},
		{
			name: "args.cni.labels",
			args: `{"cni":{"labels":[{"key":"app","value":"web"},{"key":"env","value":"prod"}],"ips":["10.0.0.1/24"]}}`,
			want: api.PodInfo{Namespace: "default", Name: "0123456789ab", Labels: map[string]string{"app": "web", "env": "prod"}},
		},
		{
			name: "mesos labels, cni labels win on conflict",
			args: `{"org.apache.mesos":{"network_info":{"name":"skein","labels":{"labels":[{"key":"app","value":"mesos"},{"key":"team","value":"a"}]},
				"port_mappings":[{"host_port":8080,"container_port":80}]}},
				"cni":{"labels":[{"key":"app","value":"cni"}]}}`,
			want: api.PodInfo{Namespace: "default", Name: "0123456789ab", Labels: map[string]string{"app": "cni", "team": "a"}},
		},
		{
			name: "named ports, protocol defaulted and upper-cased",
			args: `{"skein":{"ports":[{"name":"http","port":80},{"name":"dns","port":53,"protocol":"udp"}]}}`,
			want: api.PodInfo{Namespace: "default", Name: "0123456789ab", Ports: []api.NamedPort{
				{Name: "http", Port: 80, Protocol: "TCP"}, {Name: "dns", Port: 53, Protocol: "UDP"},
			}},
		},
		{name: "labels not a list", args: `{"cni":{"labels":"app=web"}}`, wantCode: types.ErrInvalidNetworkConfig, wantField: "args.cni.labels"},
		{name: "label without key", args: `{"cni":{"labels":[{"value":"x"}]}}`, wantCode: types.ErrInvalidNetworkConfig, wantField: "args.cni.labels[0]"},
		{name: "port out of range", args: `{"skein":{"ports":[{"name":"a","port":70000}]}}`, wantCode: types.ErrInvalidNetworkConfig, wantField: "args.skein.ports[0]"},
		{name: "port without name", args: `{"skein":{"ports":[{"port":80}]}}`, wantCode: types.ErrInvalidNetworkConfig, wantField: "args.skein.ports[0]"},
		{name: "namespace with a slash", cniArgs: "K8S_POD_NAMESPACE=a/b;K8S_POD_NAME=web-0", wantCode: types.ErrInvalidNetworkConfig, wantField: "K8S_POD_NAMESPACE"},
		{name: "namespace upper case", cniArgs: "K8S_POD_NAMESPACE=Shop", wantCode: types.ErrInvalidNetworkConfig, wantField: "K8S_POD_NAMESPACE"},
		{name: "pod name with a slash", cniArgs: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web/0", wantCode: types.ErrInvalidNetworkConfig, wantField: "K8S_POD_NAME"},
		{name: "pod name too long", cniArgs: "K8S_POD_NAME=" + strings.Repeat("a", 254), wantCode: types.ErrInvalidNetworkConfig, wantField: "K8S_POD_NAME"},
		{name: "bad protocol", args: `{"skein":{"ports":[{"name":"a","port":1},{"name":"b","port":2,"protocol":"icmp"}]}}`, wantCode: types.ErrInvalidNetworkConfig, wantField: "args.skein.ports[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni"`
			if tc.args != "" {
				in += `,"args":` + tc.args
			}
			conf, err := loadConf([]byte(in + "}"))
			if err != nil {
				t.Fatalf("loadConf() error = %v", err)
			}
			got, err := podInfo(conf, tc.cniArgs, cid)
			if tc.wantCode != 0 {
				assertCNIError(t, err, tc.wantCode, tc.wantField)
				return
			}
			if err != nil {
				t.Fatalf("podInfo() error = %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("podInfo() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestPodInfoShortContainerID(t *testing.T) {
	t.Parallel()
	conf, err := loadConf([]byte(`{"name":"n"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := podInfo(conf, "", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "abc" {
		t.Errorf("podInfo().Name = %q, want %q", got.Name, "abc")
	}
}

// assertCNIError fails unless err is a *types.Error with code whose message
// mentions field.
func assertCNIError(t *testing.T, err error, code uint, field string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error = %v (%T), want *types.Error with code %d", err, err, code)
	}
	if te.Code != code {
		t.Errorf("error code = %d (%v), want %d", te.Code, te, code)
	}
	if field != "" && !strings.Contains(te.Msg, field) {
		t.Errorf("error message %q does not name %s", te.Msg, field)
	}
}
