package flagsource

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/skeinnet/skein/store"
)

// Daemon is what every Skein daemon (skeind, skein-kube) takes the same
// way: its etcd, its logging, a config file and --version.
type Daemon struct {
	name                             string
	endpoints, prefix, cert, key, ca *string
	logLevel, logFormat, file        *string
	version                          *bool
}

// AddDaemon defines the common flags on fs; etcdWhat ends the help of
// --etcd-endpoints (e.g. "of Skein's etcd").
func AddDaemon(fs *flag.FlagSet, etcdWhat string) *Daemon {
	return &Daemon{
		name:      fs.Name(),
		endpoints: fs.String("etcd-endpoints", "", "comma-separated etcd client URLs"+etcdWhat),
		prefix:    fs.String("etcd-prefix", "/skein/", "etcd key prefix"),
		cert:      fs.String("etcd-cert", "", "etcd client certificate (TLS)"),
		key:       fs.String("etcd-key", "", "etcd client key (TLS)"),
		ca:        fs.String("etcd-ca", "", "etcd CA certificate (TLS)"),
		logLevel:  fs.String("log-level", "info", "debug, info, warn or error"),
		logFormat: fs.String("log-format", "text", "text or json"),
		file:      fs.String("config", "", "optional YAML file of flag values (flag name: value)"),
		version:   fs.Bool("version", false, "print the version and exit"),
	}
}

// Load parses args, then fills what the command line left unset from the
// environment and the config file, and returns the logger on logTo.
// printed is true when --version was asked and printed to out: the daemon
// then exits.
func (d *Daemon) Load(fs *flag.FlagSet, args []string, version string, out, logTo io.Writer) (log *slog.Logger, printed bool, err error) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nEvery flag can also be set as SKEIN_<FLAG> in the environment (e.g. SKEIN_ETCD_ENDPOINTS)\nor in --config; command-line flags win over the environment, which wins over the file.\n\n", d.name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if *d.version {
		fmt.Fprintln(out, version)
		return nil, true, nil
	}
	if err := ApplyFlagSet(fs, *d.file); err != nil {
		return nil, false, err
	}
	log, err = Logger(logTo, *d.logLevel, *d.logFormat)
	return log, false, err
}

// Store is the etcd client configuration the flags give.
func (d *Daemon) Store(log *slog.Logger) store.Config {
	return store.Config{
		Endpoints: List(*d.endpoints), Prefix: *d.prefix,
		CertFile: *d.cert, KeyFile: *d.key, CAFile: *d.ca, Log: log,
	}
}
