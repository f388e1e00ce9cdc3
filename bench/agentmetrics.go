package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinnet/skein/lab"
)

// verbTotals holds a histogram's sum (seconds) and count per verb, for
// successful calls.
type verbTotals map[string][2]float64

// scrapeCNIMetrics reads the agent's CNI request histogram totals from
// /metrics inside the host's namespace.
func scrapeCNIMetrics(ctx context.Context, l *lab.Lab, host string) (verbTotals, error) {
	hc, err := l.HTTPClient(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lab.AgentDebugAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", host, resp.Status)
	}
	t := verbTotals{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parseSample(sc.Text())
		if !ok || labels["result"] != "ok" {
			continue
		}
		v := t[labels["verb"]]
		switch name {
		case cniMetric + "_sum":
			v[0] = value
		case cniMetric + "_count":
			v[1] = value
		default:
			continue
		}
		t[labels["verb"]] = v
	}
	return t, sc.Err()
}

// parseSample parses one Prometheus text-format sample line with simple
// label values (no escaped quotes or commas in them).
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	rest := line
	labels = map[string]string{}
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.IndexByte(line, '}')
		if j < i {
			return "", nil, 0, false
		}
		name, rest = line[:i], strings.TrimSpace(line[j+1:])
		for _, kv := range strings.Split(line[i+1:j], ",") {
			k, v, found := strings.Cut(kv, "=")
			if found {
				labels[strings.TrimSpace(k)] = strings.Trim(v, `"`)
			}
		}
	} else {
		f := strings.Fields(line)
		if len(f) < 2 {
			return "", nil, 0, false
		}
		name, rest = f[0], f[1]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", nil, 0, false
	}
	value, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, value, true
}

// verbMeans returns the mean agent-side time per verb between two scrapes.
func verbMeans(before, after verbTotals) []VerbTime {
	var out []VerbTime
	for verb, a := range after {
		b := before[verb]
		n := a[1] - b[1]
		if n <= 0 {
			continue
		}
		out = append(out, VerbTime{Verb: verb, Mean: time.Duration((a[0] - b[0]) / n * float64(time.Second)), N: int(n)})
	}
	slices.SortFunc(out, func(x, y VerbTime) int { return strings.Compare(x.Verb, y.Verb) })
	return out
}
