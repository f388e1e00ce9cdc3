// Package flagsource fills command-line flags from their two other sources,
// the SKEIN_* environment and a YAML config file, in one order for every
// Skein binary: a flag given on the command line wins over the environment,
// which wins over the file. skeind (package flag) and skein (cobra/pflag)
// both load their settings through it.
package flagsource

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Flag is one flag as the loader sees it.
type Flag struct {
	// Name is the flag's name without dashes, e.g. "etcd-endpoints".
	Name string
	// Changed reports that the command line set it: nothing overrides it.
	Changed bool
	// Set parses a value as the command line would.
	Set func(string) error
}

// EnvName returns the environment variable of a flag: SKEIN_ and the name
// in capitals with "_" for "-" (etcd-endpoints → SKEIN_ETCD_ENDPOINTS).
func EnvName(flag string) string {
	return "SKEIN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ReadFile reads a YAML file of flag values keyed by flag name. A key that
// names no flag in known is an error naming the file, the key and the
// settings it may hold, so a typo never goes unnoticed.
func ReadFile(path string, known []string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	for k := range m {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("config file %s: unknown setting %q (want one of %s)", path, k, strings.Join(known, ", "))
		}
	}
	return m, nil
}

// Fill sets every flag the command line did not set: from its environment
// variable, else from the file's value (file names the file in errors; nil
// values means no file). All problems are returned together.
func Fill(flags []Flag, file string, values map[string]any) error {
	var errs []error
	for _, f := range flags {
		if f.Changed {
			continue
		}
		env := EnvName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			continue
		}
		if v, ok := values[f.Name]; ok {
			if err := f.Set(Value(v)); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", file, f.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Value renders a YAML value as a flag takes it: a list joined by commas,
// anything else as printed.
func Value(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// ApplyFlagSet fills the flags of fs the command line left unset from the
// environment and then from file (YAML; "" for none): the daemons' one
// loader, flags > env > file.
func ApplyFlagSet(fs *flag.FlagSet, file string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var (
		flags []Flag
		names []string
	)
	fs.VisitAll(func(f *flag.Flag) {
		flags = append(flags, Flag{Name: f.Name, Changed: set[f.Name], Set: f.Value.Set})
		names = append(names, f.Name)
	})
	var values map[string]any
	if file != "" {
		var err error
		if values, err = ReadFile(file, names); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
	}
	return Fill(flags, file, values)
}

// List splits a comma-separated flag value, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Logger is the daemons' slog logger on w for --log-level and --log-format.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
