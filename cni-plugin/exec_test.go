package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// These run the real binary in the test's own netns. None of them reaches
// the dataplane: skel rejects the request first, the verb never touches the
// kernel (VERSION, STATUS), or the config fails validation before anything
// else (and CNI_NETNS points nowhere as a second guard).

func TestExecVersion(t *testing.T) {
	t.Parallel()
	res := runHere(t, []string{"CNI_COMMAND=VERSION"}, []byte(`{"cniVersion":"0.2.0"}`))
	res.OK(t, "VERSION")
	var got struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(res.Stdout, &got); err != nil {
		t.Fatalf("VERSION output is not JSON: %v\n%s", err, res.Stdout)
	}
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(got.SupportedVersions, v) {
			t.Errorf("supportedVersions %v lacks %s", got.SupportedVersions, v)
		}
	}
	if got.CNIVersion != "1.1.0" {
		t.Errorf("cniVersion = %q, want 1.1.0", got.CNIVersion)
	}
}

func TestExecErrors(t *testing.T) {
	t.Parallel()
	nowhere := "CNI_NETNS=/nonexistent/netns"
	full := func(cmd string) []string {
		return []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=c1", nowhere, "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
	}
	good := `{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","socket":"/nonexistent/skeind.sock"}`
	tests := []struct {
		name     string
		env      []string
		stdin    string
		wantCode uint
		wantMsg  string
	}{
		{name: "malformed stdin", env: full("ADD"), stdin: `{"cniVersion":"1.1.0","name":`, wantCode: types.ErrDecodingFailure},
		{name: "missing CNI_COMMAND", env: []string{"CNI_CONTAINERID=c1", nowhere, "CNI_IFNAME=eth0", "CNI_PATH=/x"}, stdin: good,
			wantCode: types.ErrInvalidEnvironmentVariables, wantMsg: "CNI_COMMAND"},
		{name: "missing CNI_CONTAINERID", env: []string{"CNI_COMMAND=ADD", nowhere, "CNI_IFNAME=eth0", "CNI_PATH=/x"}, stdin: good,
			wantCode: types.ErrInvalidEnvironmentVariables, wantMsg: "CNI_CONTAINERID"},
		{name: "unknown command", env: full("FROB"), stdin: good, wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "missing name", env: full("ADD"), stdin: `{"cniVersion":"1.1.0","type":"skein-cni"}`, wantCode: types.ErrInvalidNetworkConfig},
		{name: "unsupported version", env: full("ADD"), stdin: `{"cniVersion":"9.0.0","name":"skein"}`, wantCode: types.ErrIncompatibleCNIVersion},
		{name: "CHECK below 0.4.0", env: full("CHECK"), stdin: `{"cniVersion":"0.3.1","name":"skein"}`, wantCode: types.ErrIncompatibleCNIVersion},
		{name: "bad timeout", env: full("ADD"), stdin: `{"cniVersion":"1.1.0","name":"skein","timeout":"soon"}`,
			wantCode: types.ErrInvalidNetworkConfig, wantMsg: "timeout"},
		{name: "relative socket", env: full("DEL"), stdin: `{"cniVersion":"1.1.0","name":"skein","socket":"skeind.sock"}`,
			wantCode: types.ErrInvalidNetworkConfig, wantMsg: "socket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := runHere(t, tc.env, []byte(tc.stdin)).Error(t)
			if e.Code != tc.wantCode || !strings.Contains(e.Msg, tc.wantMsg) {
				t.Errorf("error = %+v, want code %d with %q in the message", e, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestExecStatus(t *testing.T) {
	t.Parallel()
	agent := newFakeAgent(t, t.TempDir())
	env := []string{"CNI_COMMAND=STATUS", "CNI_PATH=/opt/cni/bin"}
	conf := func(socket string) []byte {
		return []byte(`{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","socket":"` + socket + `"}`)
	}
	res := runHere(t, env, conf(agent.socket))
	res.OK(t, "STATUS")
	if len(res.Stdout) != 0 {
		t.Errorf("STATUS printed %q, want nothing", res.Stdout)
	}

	missing := filepath.Join(t.TempDir(), "gone.sock")
	e := runHere(t, env, conf(missing)).Error(t)
	if e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Error(), missing) {
		t.Errorf("STATUS with agent down = %+v, want code 50 naming %s", e, missing)
	}

	e = runHere(t, env, []byte(`{"cniVersion":"1.0.0","name":"skein","socket":"`+agent.socket+`"}`)).Error(t)
	if e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("STATUS for 1.0.0 = %+v, want code 1", e)
	}
}
