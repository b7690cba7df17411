package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

const pathDigests = "/api/v1/digests"

// topOptions are the flags of proxyctl top.
type topOptions struct {
	cluster  string
	sort     string
	limit    int
	interval time.Duration
	once     bool
	width    int
}

func (a *app) topCmd() *cobra.Command {
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the statement digests live, busiest first (like top)",
		Long: `top shows the proxy's statement digests (GET /api/v1/digests): one row per
cluster, user, schema and normalised statement, refreshed every --interval
until interrupted. QPS is the rate of each row since the previous refresh.
With --once (or -o json) it prints one table and exits, for scripts.

Sort keys: total (summed latency), count, avg, max, p99, errors, rows, last_seen.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if o.interval <= 0 {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--interval %s: must be positive", o.interval)}
			}
			if o.limit < 0 {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--limit %d: must be 0 (all) or more", o.limit)}
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			if o.once || a.output == outputJSON {
				var list api.DigestList
				raw, err := c.getJSON(cmd.Context(), o.path(), &list)
				if err != nil {
					return err
				}
				return a.show(raw, func(w io.Writer) { renderDigests(w, &list, nil, 0, o.width) })
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.liveTop(ctx, c, o)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.cluster, "cluster", "", "only this cluster")
	f.StringVar(&o.sort, "sort", "total", "order, descending: total, count, avg, max, p99, errors, rows, last_seen")
	f.IntVar(&o.limit, "limit", 20, "rows to show (0: all)")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "refresh period")
	f.BoolVar(&o.once, "once", false, "print one table and exit")
	f.IntVar(&o.width, "width", 80, "cut the statement text at this many characters (0: whole)")
	cmd.AddCommand(a.topResetCmd())
	return cmd
}

func (o topOptions) path() string {
	q := url.Values{}
	if o.cluster != "" {
		q.Set("cluster", o.cluster)
	}
	q.Set("sort", o.sort)
	q.Set("limit", strconv.Itoa(o.limit))
	return pathDigests + "?" + q.Encode()
}

func (a *app) topResetCmd() *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Empty the digest tables (of one --cluster, or all); needs the token",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			path := pathDigests
			if cluster != "" {
				path += "?cluster=" + url.QueryEscape(cluster)
			}
			if _, err := c.do(cmd.Context(), request{method: http.MethodDelete, path: path}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "digest tables reset")
			return nil
		}),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	return cmd
}

// digestKey identifies a row across refreshes.
func digestKey(d *api.Digest) string {
	return d.Cluster + "\x00" + d.User + "\x00" + d.Schema + "\x00" + d.Digest
}

// liveTop redraws the table every interval until ctx ends. A failed refresh
// is shown in place of the table and retried: the proxy may be restarting.
func (a *app) liveTop(ctx context.Context, c *client, o topOptions) error {
	var prev map[string]uint64
	var prevAt time.Time
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		var list api.DigestList
		_, err := c.getJSON(ctx, o.path(), &list)
		now := a.now()
		fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home, clear screen
		fmt.Fprintf(a.stdout, "switchyard top  %s  %s  sort=%s  every %s  (Ctrl-C quits)\n\n",
			a.apiURL, now.Format("15:04:05"), o.sort, o.interval)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(a.stdout, "refresh failed: %s\n", oneLine(err.Error()))
		} else {
			renderDigests(a.stdout, &list, prev, now.Sub(prevAt), o.width)
			prev = map[string]uint64{}
			for i := range list.Digests {
				prev[digestKey(&list.Digests[i])] = list.Digests[i].Count
			}
			prevAt = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// renderDigests prints the digest table. With prev (counts at the last
// refresh, elapsed ago) it adds each row's QPS.
func renderDigests(w io.Writer, list *api.DigestList, prev map[string]uint64, elapsed time.Duration, width int) {
	if !list.Enabled {
		fmt.Fprintln(w, "digests are disabled ([digests] enabled = false): the tables are not growing")
	}
	fmt.Fprintf(w, "%d digests held, showing %d, sorted by %s\n", list.Total, len(list.Digests), list.Sort)
	t := newTable(w, "CLUSTER", "USER", "SCHEMA", "COUNT", "QPS", "ERRORS", "AVG_MS", "P95_MS", "P99_MS", "MAX_MS", "ROWS", "DIGEST", "STATEMENT")
	row := func(d *api.Digest, digest, text string) {
		qps := "-"
		if prev != nil && elapsed > 0 {
			if before, ok := prev[digestKey(d)]; ok && d.Count >= before {
				qps = strconv.FormatFloat(float64(d.Count-before)/elapsed.Seconds(), 'f', 1, 64)
			}
		}
		t.row(d.Cluster, d.User, d.Schema, strconv.FormatUint(d.Count, 10), qps, strconv.FormatUint(d.Errors, 10),
			msCell(d.AvgMs), msCell(d.P95Ms), msCell(d.P99Ms), msCell(d.MaxMs), strconv.FormatUint(d.RowsSent, 10),
			digest, cut(text, width))
	}
	for i := range list.Digests {
		d := &list.Digests[i]
		row(d, shortDigest(d.Digest), d.DigestText)
	}
	for i := range list.Others {
		row(&list.Others[i], "others", "(digests evicted to keep the table bounded)")
	}
	t.flush()
}

func msCell(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// cut shortens s to n runes (0: no limit), marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if n <= 0 || len(r) <= n {
		return s
	}
	if n <= 3 {
		return string(r[:n])
	}
	return string(r[:n-3]) + "..."
}
