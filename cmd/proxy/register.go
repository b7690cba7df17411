package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/register"
	"github.com/switchyard-db/switchyard/pkg/server"
	"go.uber.org/zap"
)

const registerUsage = `usage: proxy register --etcd-endpoints A[,B...] --addr HOST:PORT --status-addr HOST:PORT
       [--prefix /topology/tidb] [--pid N | --pid-file FILE] [--ttl 15s] [--label K=V ...]
       [--version V] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE]
       [--log-level info] [--log-format console|json] [--log-file FILE]

Registers one MySQL-compatible backend in a cluster's etcd the way TiDB does,
serves /status and /metrics for it, and removes its keys on SIGTERM or SIGINT.
`

// registerOptions are the parsed flags of "proxy register".
type registerOptions struct {
	reg     register.Config
	etcdTLS config.TLSConfig
	log     config.Log
}

// labelsFlag collects repeated --label k=v.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", s)
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = strings.TrimSpace(v)
	return nil
}

// parseRegisterFlags parses and checks the flags; every error is a usage
// error (exit 2). Output (usage, flag errors) goes to out.
func parseRegisterFlags(args []string, out io.Writer) (*registerOptions, error) {
	fs := flag.NewFlagSet("proxy register", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, registerUsage)
		fs.PrintDefaults()
	}
	o := &registerOptions{}
	endpoints := fs.String("etcd-endpoints", "", "comma-separated etcd endpoints of the cluster (its PD)")
	fs.StringVar(&o.reg.Addr, "addr", "", "the backend's SQL address host:port, as clients reach it")
	fs.StringVar(&o.reg.StatusAddr, "status-addr", "", "listen address for /status and /metrics")
	fs.StringVar(&o.reg.Prefix, "prefix", register.DefaultPrefix, "etcd topology prefix")
	fs.IntVar(&o.reg.Pid, "pid", 0, "the backend's process id, for /metrics")
	fs.StringVar(&o.reg.PidFile, "pid-file", "", "file holding the backend's pid, read on every scrape")
	fs.DurationVar(&o.reg.TTL, "ttl", register.DefaultTTL, "lease TTL (whole seconds)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "a label key=value (repeatable)")
	fs.StringVar(&o.reg.Version, "version", "", "the version to register (default: read from the backend's greeting)")
	fs.StringVar(&o.etcdTLS.CA, "etcd-ca", "", "CA bundle verifying etcd (enables TLS)")
	fs.StringVar(&o.etcdTLS.Cert, "etcd-cert", "", "client certificate for etcd (enables TLS)")
	fs.StringVar(&o.etcdTLS.Key, "etcd-key", "", "client key for etcd")
	fs.StringVar(&o.log.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.log.Format, "log-format", "console", "console or json")
	fs.StringVar(&o.log.File, "log-file", "", "log file (default stderr)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			o.reg.EtcdEndpoints = append(o.reg.EtcdEndpoints, ep)
		}
	}
	var missing []string
	for name, v := range map[string]string{"--etcd-endpoints": *endpoints, "--addr": o.reg.Addr, "--status-addr": o.reg.StatusAddr} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if (o.etcdTLS.Cert == "") != (o.etcdTLS.Key == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if len(labels) > 0 {
		o.reg.Labels = labels
	}
	return o, nil
}

// runRegister is "proxy register": 0 after a clean shutdown, 1 when it
// cannot run, 2 on bad flags.
func runRegister(args []string) int {
	if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		// Asked for: the usage goes to stdout and it is no error.
		_, _ = parseRegisterFlags([]string{"--help"}, os.Stdout)
		return 0
	}
	o, err := parseRegisterFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxy register: %v\n\n%s", err, registerUsage)
		return 2
	}
	lg, err := server.NewLogger(o.log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxy register: %v\n", err)
		return 2
	}
	defer func() { _ = lg.Sync() }()
	// https:// endpoints without any TLS flag verify etcd against the system roots.
	httpsEndpoint := slices.ContainsFunc(o.reg.EtcdEndpoints, func(ep string) bool {
		return strings.HasPrefix(strings.ToLower(ep), "https://")
	})
	if o.etcdTLS.Enabled() || httpsEndpoint {
		if o.reg.EtcdTLS, err = o.etcdTLS.ClientTLS(); err != nil {
			lg.Error("cannot load the etcd TLS files", zap.Error(err))
			return 1
		}
	}
	reg, err := register.New(lg, o.reg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxy register: %v\n", err)
		return 2
	}
	// Caught before anything is registered: a SIGTERM right after start-up
	// must still remove the keys.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// A second signal during the clean-up stops at once; the ttl key then
	// goes away with its lease.
	context.AfterFunc(ctx, stop)
	if err := reg.Run(ctx); err != nil {
		lg.Error("register stopped", zap.Error(err))
		return 1
	}
	return 0
}
