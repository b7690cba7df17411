package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

// drainPath is the drain endpoint of backend "<cluster>/<addr>".
func drainPath(id string) (string, error) {
	cluster, addr, ok := strings.Cut(id, "/")
	if !ok || cluster == "" || addr == "" || strings.Contains(addr, "/") {
		return "", &exitError{code: exitTrouble, err: fmt.Errorf("backend %q: want <cluster>/<addr> as in proxyctl backends, e.g. east/10.0.0.1:4000", id)}
	}
	return "/api/v1/backends/" + url.PathEscape(cluster) + "/" + url.PathEscape(addr) + "/drain", nil
}

func (a *app) backendCmd() *cobra.Command {
	var timeout time.Duration
	drain := &cobra.Command{
		Use:   "drain <cluster>/<addr>",
		Short: "Take a backend out of service: no new sessions, its sessions move away",
		Long: `Drain a backend (POST /api/v1/backends/{cluster}/{addr}/drain): it takes no new
sessions, and its sessions move to the other backends of the same cluster at
their next transaction boundary. Sessions that cannot move (LOCK TABLES,
GET_LOCK, temporary tables, a user without a recoverable credential) are
closed after the timeout with an error that says why. A session never moves to
another cluster. The drain lasts until undrain or a restart, in this proxy
only: the fleet's other proxies keep routing new sessions to the backend until
each of them is drained too (run it against every proxy's --api).`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			path, err := drainPath(args[0])
			if err != nil {
				return err
			}
			if timeout < 0 {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--timeout %s: must be positive", timeout)}
			}
			if timeout > 0 {
				path += "?timeout=" + url.QueryEscape(timeout.String())
			}
			return a.callDrain(cmd, http.MethodPost, path)
		}),
	}
	drain.Flags().DurationVar(&timeout, "timeout", 0, "how long sessions get to move before those that cannot are closed (default: balance.backend-drain-timeout)")
	undrain := &cobra.Command{
		Use:   "undrain <cluster>/<addr>",
		Short: "Let a drained backend take sessions again",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			path, err := drainPath(args[0])
			if err != nil {
				return err
			}
			return a.callDrain(cmd, http.MethodDelete, path)
		}),
	}
	return groupCmd("backend", "Drain a backend (move its sessions away) or undrain it", drain, undrain)
}

func (a *app) callDrain(cmd *cobra.Command, method, path string) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	resp, err := c.do(cmd.Context(), request{method: method, path: path, accept: "application/json"})
	if err != nil {
		return err
	}
	var d api.BackendDrain
	if err := c.decode(path, resp.body, &d); err != nil {
		return err
	}
	return a.show(resp.body, func(w io.Writer) { renderDrain(w, a.now(), &d) })
}

func renderDrain(w io.Writer, now time.Time, d *api.BackendDrain) {
	t := newTable(w)
	t.row("BACKEND", d.ID)
	switch {
	case d.Drained && d.Deadline != nil:
		t.row("DRAINED", fmt.Sprintf("yes, sessions that cannot move are closed at %s (in %s)",
			d.Deadline.UTC().Format(time.RFC3339), age(*d.Deadline, now)))
	case d.WasDrained != nil && !*d.WasDrained:
		t.row("DRAINED", "no (it was not drained)")
	default:
		t.row("DRAINED", "no")
	}
	t.row("SESSIONS", fmt.Sprint(d.Sessions))
	t.flush()
}

func (a *app) migrationsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrations",
		Short: "Show drained backends and the last session migrations",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var doc api.MigrationsDoc
			raw, err := c.getJSON(cmd.Context(), "/api/v1/migrations", &doc)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderMigrations(w, a.now(), &doc) })
		}),
	}
}

func renderMigrations(w io.Writer, now time.Time, doc *api.MigrationsDoc) {
	results := make([]string, 0, len(doc.Totals))
	for r := range doc.Totals {
		results = append(results, r)
	}
	slices.Sort(results)
	var totals []string
	for _, r := range results {
		totals = append(totals, fmt.Sprintf("%s=%d", r, doc.Totals[r]))
	}
	t := newTable(w)
	t.row("PENDING", fmt.Sprint(doc.Pending))
	t.row("TOTALS", cell(strings.Join(totals, " ")))
	t.flush()
	if len(doc.Drains) > 0 {
		fmt.Fprintln(w)
		t = newTable(w, "DRAINED", "SINCE", "DEADLINE", "SESSIONS")
		for _, d := range doc.Drains {
			since, deadline := "-", "-"
			if d.Since != nil {
				since = age(now, *d.Since)
			}
			if d.Deadline != nil {
				deadline = d.Deadline.UTC().Format(time.RFC3339)
			}
			t.row(d.ID, since, deadline, fmt.Sprint(d.Sessions))
		}
		t.flush()
	}
	if len(doc.Recent) > 0 {
		fmt.Fprintln(w)
		t = newTable(w, "AGO", "SESSION", "CLUSTER", "FROM", "TO", "REASON", "RESULT", "MS", "ERROR")
		for _, m := range doc.Recent {
			t.row(age(now, m.Time), fmt.Sprint(m.SessionID), m.Cluster, m.From, cell(m.To), m.Reason, m.Result,
				fmt.Sprintf("%.1f", m.DurationMS), cell(oneLine(m.Error)))
		}
		t.flush()
	}
}
