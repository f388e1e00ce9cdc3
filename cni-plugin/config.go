package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skeinnet/skein/api"
)

// Defaults for optional network config keys.
const (
	defaultSocket    = "/run/skein/skeind.sock"
	defaultTimeout   = 30 * time.Second
	defaultNamespace = "default"
	// podNameFromIDLen is how much of the container id names a workload the
	// runtime did not name (the length docker and podman print).
	podNameFromIDLen = 12
)

// Plugin-specific error codes (the spec leaves 100 and up to plugins).
const (
	errCodeAttachmentExists uint = 100
	errCodeCheckFailed      uint = 101
)

// netConf is the JSON the runtime passes on stdin. Unknown keys
// (capabilities, runtimeConfig, ipam, ...) are ignored.
//
// It embeds types.PluginConf, whose MarshalJSON would be promoted and drop
// the fields below, so netConf is only ever unmarshalled.
type netConf struct {
	types.PluginConf
	Socket   string          `json:"socket"`
	LogFile  string          `json:"logFile"`
	LogLevel string          `json:"logLevel"`
	Timeout  string          `json:"timeout"`
	Args     json.RawMessage `json:"args"`
	// LegacyAttachments is the duplicate GC key libcni still sends ("#1101:
	// spec used incorrect variable name").
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments"`
}

// config is the validated network config.
type config struct {
	CNIVersion string // never empty: a config without one is 0.1.0
	Name       string
	Socket     string
	Timeout    time.Duration
	LogFile    string
	LogLevel   slog.Level
	// Valid lists the attachments GC must keep; ValidSet reports whether the
	// runtime sent the list at all.
	Valid    []api.Owner
	ValidSet bool

	plugin types.PluginConf // for prevResult, parsed lazily by ADD and CHECK
	args   json.RawMessage  // parsed lazily by ADD (podInfo)
}

// confArgs is the part of the config's "args" object the plugin reads; other
// keys are ignored, as CONVENTIONS.md asks.
type confArgs struct {
	CNI struct {
		Labels []keyValue `json:"labels"`
	} `json:"cni"`
	Mesos struct {
		NetworkInfo struct {
			Labels struct {
				Labels []keyValue `json:"labels"`
			} `json:"labels"`
		} `json:"network_info"`
	} `json:"org.apache.mesos"`
	Skein struct {
		Ports []api.NamedPort `json:"ports"`
	} `json:"skein"`
}

type keyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// loadConf parses and validates the network config. Failures are *types.Error:
// 6 when the JSON cannot be decoded, 7 (naming the key) for a bad value.
func loadConf(stdin []byte) (*config, error) {
	var nc netConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, decodeError("network config", err)
	}
	c := &config{
		CNIVersion: nc.CNIVersion,
		Name:       nc.Name,
		Socket:     nc.Socket,
		Timeout:    defaultTimeout,
		LogFile:    nc.LogFile,
		LogLevel:   slog.LevelWarn,
		plugin:     nc.PluginConf,
		args:       nc.Args,
	}
	if c.CNIVersion == "" {
		c.CNIVersion = "0.1.0" // as version.ConfigDecoder and the spec read it
	}
	if c.Socket == "" {
		c.Socket = defaultSocket
	}
	if !filepath.IsAbs(c.Socket) {
		return nil, invalidConf("socket", fmt.Sprintf("%q is not an absolute path", c.Socket))
	}
	if nc.Timeout != "" {
		d, err := time.ParseDuration(nc.Timeout)
		if err != nil {
			return nil, invalidConf("timeout", err.Error())
		}
		if d <= 0 {
			return nil, invalidConf("timeout", fmt.Sprintf("%q must be positive", nc.Timeout))
		}
		c.Timeout = d
	}
	if c.LogFile != "" && !filepath.IsAbs(c.LogFile) {
		return nil, invalidConf("logFile", fmt.Sprintf("%q is not an absolute path", c.LogFile))
	}
	if nc.LogLevel != "" {
		if err := c.LogLevel.UnmarshalText([]byte(nc.LogLevel)); err != nil {
			return nil, invalidConf("logLevel", fmt.Sprintf("%q: want debug, info, warn or error", nc.LogLevel))
		}
	}
	valid := nc.ValidAttachments
	if valid == nil {
		valid = nc.LegacyAttachments
	}
	c.ValidSet = valid != nil
	c.Valid = make([]api.Owner, 0, len(valid))
	for _, a := range valid {
		c.Valid = append(c.Valid, api.Owner{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return c, nil
}

// podInfo gathers what the runtime told us about the workload: namespace and
// name from CNI_ARGS (Kubernetes), labels from args.cni.labels and Mesos'
// args.org.apache.mesos.network_info.labels.labels, named ports from
// args.skein.ports. A missing namespace is "default"; a missing name is the
// first 12 characters of the container id.
func podInfo(c *config, cniArgs, containerID string) (api.PodInfo, error) {
	kv := parseCNIArgs(cniArgs)
	pod := api.PodInfo{Namespace: kv["K8S_POD_NAMESPACE"], Name: kv["K8S_POD_NAME"], UID: kv["K8S_POD_UID"]}
	// A bad name is the runtime's config (7): the agent would refuse it on
	// every retry, and code 11 makes runtimes retry forever.
	if pod.Namespace != "" {
		if err := api.ValidatePodNamespace(pod.Namespace); err != nil {
			return api.PodInfo{}, invalidArg("K8S_POD_NAMESPACE", err.Error())
		}
	}
	if pod.Name != "" {
		if err := api.ValidateKubePodName(pod.Name); err != nil {
			return api.PodInfo{}, invalidArg("K8S_POD_NAME", err.Error())
		}
	}
	if pod.Namespace == "" {
		pod.Namespace = defaultNamespace
	}
	if pod.Name == "" {
		pod.Name = containerID[:min(len(containerID), podNameFromIDLen)]
	}
	if len(c.args) == 0 || string(c.args) == "null" {
		return pod, nil
	}
	var a confArgs
	if err := json.Unmarshal(c.args, &a); err != nil {
		return api.PodInfo{}, decodeError("args", err)
	}
	// Mesos first, so that the generic CNI convention wins on a conflict.
	sources := []struct {
		field  string
		labels []keyValue
	}{
		{"args.org.apache.mesos.network_info.labels.labels", a.Mesos.NetworkInfo.Labels.Labels},
		{"args.cni.labels", a.CNI.Labels},
	}
	for _, src := range sources {
		for i, l := range src.labels {
			if l.Key == "" {
				return api.PodInfo{}, invalidConf(fmt.Sprintf("%s[%d]", src.field, i), "empty key")
			}
			if pod.Labels == nil {
				pod.Labels = map[string]string{}
			}
			pod.Labels[l.Key] = l.Value
		}
	}
	for i, p := range a.Skein.Ports {
		field := fmt.Sprintf("args.skein.ports[%d]", i)
		if p.Name == "" {
			return api.PodInfo{}, invalidConf(field, "empty name")
		}
		if p.Port < 1 || p.Port > 65535 {
			return api.PodInfo{}, invalidConf(field, fmt.Sprintf("port %d out of range 1-65535", p.Port))
		}
		switch p.Protocol = strings.ToUpper(p.Protocol); p.Protocol {
		case "":
			p.Protocol = "TCP"
		case "TCP", "UDP", "SCTP":
		default:
			return api.PodInfo{}, invalidConf(field, fmt.Sprintf("protocol %q: want TCP, UDP or SCTP", p.Protocol))
		}
		pod.Ports = append(pod.Ports, p)
	}
	return pod, nil
}

// parseCNIArgs reads "K1=V1;K2=V2" leniently. types.LoadArgs rejects unknown
// keys unless IgnoreUnknown is set and pairs that are not exactly K=V; runtimes
// add keys over time (K8S_POD_UID arrived late), so every pair with a key is
// kept, a value may contain '=', and anything else is skipped.
func parseCNIArgs(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		out[k] = strings.TrimSpace(v)
	}
	return out
}

// invalidConf is error 7 naming the offending key.
func invalidConf(field, reason string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("invalid network config %q", field), reason)
}

// invalidArg is error 7 naming the offending CNI_ARGS key.
func invalidArg(key, reason string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("invalid CNI_ARGS %s", key), reason)
}

// decodeError maps a json error: a key with a value of the wrong type is an
// invalid config (7, naming the key); anything else could not be decoded (6).
func decodeError(what string, err error) *types.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		field := te.Field
		if what == "args" {
			field = "args." + field
		}
		return invalidConf(field, fmt.Sprintf("got JSON %s, want %s", te.Value, te.Type))
	}
	return types.NewError(types.ErrDecodingFailure, "decode "+what, err.Error())
}

// sortedOwners returns owners sorted by container id and ifname, for stable
// requests and logs.
func sortedOwners(in []api.Owner) []api.Owner {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b api.Owner) int {
		return cmp.Or(strings.Compare(a.ContainerID, b.ContainerID), strings.Compare(a.IfName, b.IfName))
	})
	return out
}
