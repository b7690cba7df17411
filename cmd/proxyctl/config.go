package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
	libconfig "github.com/switchyard-db/switchyard/lib/config"
)

const (
	pathConfig       = "/api/v1/config"
	pathConfigStatus = "/api/v1/config/status"

	// bodyName is how the proxy names a config that came in a request; set
	// puts the file's name back so its errors read like validate's.
	bodyName = "request body: "
)

func (a *app) configCmd() *cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "Print the config in force (TOML; -o json for JSON), secrets redacted; settings waiting for a restart are listed at the top",
		Args:  cobra.NoArgs,
		RunE:  a.action(a.configGet),
	}
	set := &cobra.Command{
		Use:   "set FILE",
		Short: "Replace the running config with FILE (- for stdin); nothing changes if it is invalid",
		Args:  cobra.ExactArgs(1),
		RunE:  a.action(a.configSet),
	}
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check FILE offline with the proxy's own validator",
		Long: `Check FILE offline with the proxy's own validator, printing every problem
with its line. Files the config names (certificates, keys) are checked on
this machine, which may not be the proxy's. -o is ignored.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(a.configValidate),
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the outcome of the last config reload",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var st api.ConfigStatus
			raw, err := c.getJSON(cmd.Context(), pathConfigStatus, &st)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderConfigStatus(w, a.now(), &st) })
		}),
	}
	return groupCmd("config", "Read, replace, validate the config and see reload status", get, set, validate, status)
}

func (a *app) configGet(cmd *cobra.Command, _ []string) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	accept := "application/toml"
	if a.output == outputJSON {
		accept = "application/json"
	}
	resp, err := c.do(cmd.Context(), request{method: http.MethodGet, path: pathConfig, accept: accept})
	if err != nil {
		return err
	}
	if a.output == outputJSON {
		return printJSON(a.stdout, resp.body)
	}
	_, err = a.stdout.Write(resp.body)
	return err
}

func (a *app) configSet(cmd *cobra.Command, args []string) error {
	file := args[0]
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(a.stdin)
		file = "stdin"
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	c, err := a.api()
	if err != nil {
		return err
	}
	resp, err := c.do(cmd.Context(), request{
		method: http.MethodPut, path: pathConfig, body: data,
		contentType: "application/toml", accept: "application/json",
	})
	var ae *apiError
	if errors.As(err, &ae) {
		for i, d := range ae.details {
			if rest, ok := strings.CutPrefix(d, bodyName); ok {
				ae.details[i] = file + ": " + rest
			}
		}
	}
	if err != nil {
		return err
	}
	var st api.ConfigStatus
	if err := c.decode(pathConfig, resp.body, &st); err != nil {
		return err
	}
	return a.show(resp.body, func(w io.Writer) {
		fmt.Fprintf(w, "%s: configuration applied\n\n", file)
		renderConfigStatus(w, a.now(), &st)
	})
}

func (a *app) configValidate(_ *cobra.Command, args []string) error {
	file := args[0]
	if _, err := libconfig.Load(file); err != nil {
		for _, line := range problemLines(err) {
			fmt.Fprintln(a.stderr, line)
		}
		return &exitError{code: exitNo}
	}
	fmt.Fprintf(a.stdout, "%s: configuration is valid\n", file)
	return nil
}

// problemLines splits the problems Load joins, one a line.
func problemLines(err error) []string {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, problemLines(e)...)
		}
		return out
	}
	return []string{oneLine(err.Error())}
}

func renderConfigStatus(w io.Writer, now time.Time, st *api.ConfigStatus) {
	t := newTable(w)
	t.row("CHECKSUM", st.Checksum)
	t.row("PATH", st.Path)
	last := when(now, st.LastReload)
	if st.LastResult != "" {
		last += fmt.Sprintf(": %s via %s", st.LastResult, cell(st.LastSource))
	}
	t.row("LAST-RELOAD", last)
	t.row("LAST-ERROR", st.LastError)
	t.row("LAST-SUCCESS", when(now, st.LastSuccess))
	t.row("RELOADS", fmt.Sprintf("%d (%d failed)", st.Reloads, st.Failures))
	t.row("NEEDS-RESTART", strings.Join(st.NeedsRestart, ", "))
	t.flush()
}
