// Command proxyctl inspects and operates a running Switchyard proxy through
// its HTTP API: health, clusters, backends, sessions, the config, and the
// health override that drains a proxy out of a load balancer. It also
// validates a config file offline with the proxy's own validator.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

const (
	defaultAPI = "http://127.0.0.1:3080"
	envAPI     = "SWITCHYARD_API"
	envToken   = "SWITCHYARD_TOKEN"

	outputTable = "table"
	outputJSON  = "json"
)

// Exit statuses. Scripts branch on them, so they never change meaning.
const (
	exitOK      = 0
	exitNo      = 1 // the API answered no: an error, unhealthy, an invalid config
	exitTrouble = 2 // the API could not be asked: unreachable, or a wrong command line
)

// app is one invocation: its streams, environment and flags. Tests build
// one with fakes instead of the process's.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	apiURL   string
	token    string
	output   string
	timeout  time.Duration
	cacert   string
	insecure bool
	cert     string
	key      string

	client *client // built on first use: offline commands never need it
}

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
	os.Exit(a.run(os.Args[1:]))
}

// run executes one command line and returns the exit status.
func (a *app) run(args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	code := a.report(root.Execute())
	if a.client != nil {
		a.client.http.CloseIdleConnections()
	}
	return code
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "proxyctl",
		Short: "Inspect and operate a Switchyard proxy through its HTTP API",
		Long: `proxyctl inspects and operates a Switchyard proxy through its HTTP API.

Exit status: 0 on success; 1 when the API says no (an API error, an
unhealthy proxy, an invalid config); 2 when the API cannot be reached or
the command line is wrong.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	f := root.PersistentFlags()
	f.StringVar(&a.apiURL, "api", defaultAPI, "API base URL (env "+envAPI+")")
	f.StringVar(&a.token, "token", "", "API token, sent with every request: api.read-token for reads, api.token for changes (drain, config set) (env "+envToken+")")
	f.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json (the API's JSON)")
	f.DurationVar(&a.timeout, "timeout", 10*time.Second, "give up on a request after this long")
	f.StringVar(&a.cacert, "cacert", "", "PEM file of the CA that signed an https API's certificate")
	f.BoolVar(&a.insecure, "insecure", false, "do not verify an https API's certificate")
	f.StringVar(&a.cert, "cert", "", "PEM client certificate for an API behind mTLS (api.client-certs maps it to a role)")
	f.StringVar(&a.key, "key", "", "PEM private key of --cert")
	root.AddCommand(a.healthCmd(), a.shadowCmd(), a.drainCmd(), a.clustersCmd(), a.backendsCmd(), a.sessionsCmd(), a.configCmd(), a.haCmd(),
		a.backendCmd(), a.migrationsCmd(), a.topCmd(), a.trafficCmd())
	return root
}

// setup checks the global flags and fills the unset ones from the
// environment. The token's default stays out of --help on purpose.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	if fl := cmd.Flag("api"); fl != nil && !fl.Changed {
		if v := a.getenv(envAPI); v != "" {
			a.apiURL = v
		}
	}
	if fl := cmd.Flag("token"); fl != nil && !fl.Changed {
		a.token = a.getenv(envToken)
	}
	switch a.output {
	case outputTable, outputJSON:
	default:
		return fmt.Errorf("--output %q: want table or json", a.output)
	}
	if a.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", a.timeout)
	}
	if (a.cert == "") != (a.key == "") {
		return errors.New("--cert and --key go together")
	}
	return nil
}

// api returns the client, building it on first use.
func (a *app) api() (*client, error) {
	if a.client == nil {
		c, err := newClient(clientOptions{
			base: a.apiURL, token: a.token, timeout: a.timeout, cacert: a.cacert, insecure: a.insecure,
			cert: a.cert, key: a.key,
		})
		if err != nil {
			return nil, &exitError{code: exitTrouble, err: err}
		}
		a.client = c
	}
	return a.client, nil
}

// exitError ends the command with code. A nil err means the output already
// said everything (an unhealthy proxy, an invalid file).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// action adapts a command's work to cobra. Its errors are typed here so
// that report can tell them from cobra's own command-line errors.
func (a *app) action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var (
			ee *exitError
			ce *connError
		)
		switch {
		case err == nil, errors.As(err, &ee):
			return err
		case errors.As(err, &ce):
			return &exitError{code: exitTrouble, err: err}
		default: // an API error, or a local one such as an unreadable file
			return &exitError{code: exitNo, err: err}
		}
	}
}

// report prints err and returns the exit status.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// cobra's own: an unknown command, a bad flag, wrong arguments.
		fmt.Fprintf(a.stderr, "proxyctl: %v\nRun 'proxyctl --help' for usage.\n", err)
		return exitTrouble
	}
	if ee.err == nil {
		return ee.code
	}
	var ae *apiError
	if errors.As(ee.err, &ae) {
		// "CODE: message", then the details (one config problem a line).
		fmt.Fprintln(a.stderr, ae.Error())
		for _, d := range ae.details {
			fmt.Fprintln(a.stderr, "  "+d)
		}
		return ee.code
	}
	fmt.Fprintln(a.stderr, "proxyctl: "+oneLine(ee.err.Error()))
	return ee.code
}

// groupCmd is a command that only holds subcommands. cobra shows help for a
// bare group but would also silently show it for a misspelt subcommand.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	c.AddCommand(subs...)
	return c
}

// oneLine keeps an error on one line: scripts read the first line of stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
