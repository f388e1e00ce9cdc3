package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/skeinnet/skein/api"
)

// fuzzPaths are the socket API's POST paths, picked by the fuzzer's first byte.
var fuzzPaths = []string{api.PathAllocate, api.PathCommit, api.PathRelease, api.PathCheck, api.PathGC}

// FuzzCNIHandler feeds arbitrary request bodies to the agent socket API
// (over a real allocator on a fake block store and an in-memory endpoint
// store): it never panics, every failure is an AgentError JSON body with a
// known CNI code and a message, and every success is JSON.
func FuzzCNIHandler(f *testing.F) {
	seeds := []struct {
		path byte
		body string
	}{
		{0, `{"containerID":"c1","ifName":"eth0","network":"net-a","pod":{"namespace":"x","name":"p"}}`},
		{0, `{"containerID":"c1","ifName":"eth0"}`},
		{1, `{"containerID":"c1","ifName":"eth0","network":"net-a","ips":["10.9.0.1"],"hostIface":"skabc"}`},
		{1, `{"containerID":"c1","ifName":"eth0","network":"net-a","ips":["not-an-ip"]}`},
		{2, `{"containerID":"c1","ifName":"eth0","network":"net-b"}`},
		{3, `{"containerID":"c1","ifName":"eth0","network":"net-a"}`},
		{4, `{"network":"net-a","valid":[{"containerID":"c1","ifName":"eth0"}]}`},
		{4, `{"valid":null}`},
		{0, `{`},
		{2, `[]`},
		{3, `null`},
	}
	for _, s := range seeds {
		f.Add(s.path, []byte(s.body))
	}
	fx := newFixtureWith(f, "10.9.0.0/29", "")
	h := fx.cni.handler()
	codes := map[uint]bool{codeInvalidConfig: true, codeUnknownCont: true, codeTryAgainLater: true, codeInternal: true, codePoolExhausted: true}
	f.Fuzz(func(t *testing.T, path byte, body []byte) {
		p := fuzzPaths[int(path)%len(fuzzPaths)]
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body)))
		if rec.Code < 300 {
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s answered %d with a body that is not JSON: %q", p, rec.Code, rec.Body.String())
			}
			return
		}
		var ae api.AgentError
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ae); err != nil {
			t.Fatalf("%s answered %d with a body that is not an AgentError: %v: %q", p, rec.Code, err, rec.Body.String())
		}
		if !codes[ae.Code] || ae.Message == "" {
			t.Fatalf("%s answered %d with AgentError %+v: want a known CNI code and a message", p, rec.Code, ae)
		}
	})
}
