package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/traffic"
)

const pathCapture = "/api/v1/traffic/capture"

func (a *app) trafficCmd() *cobra.Command {
	var req api.TrafficCaptureRequest
	var duration time.Duration
	capture := &cobra.Command{
		Use:   "capture",
		Short: "Start capturing one cluster's commands into [traffic] capture-dir (needs the token)",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if req.Cluster == "" {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--cluster is required")}
			}
			req.Duration = duration.String()
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			return a.callCapture(cmd, request{method: http.MethodPost, path: pathCapture, body: body, contentType: "application/json"})
		}),
	}
	capture.Flags().StringVar(&req.Cluster, "cluster", "", "cluster to capture")
	capture.Flags().DurationVar(&duration, "duration", time.Minute, "how long to capture")
	capture.Flags().Int64Var(&req.MaxBytes, "max-size", 0, "stop when the compressed file reaches this many bytes (0: no limit)")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the running capture, or the last one",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.callCapture(cmd, request{method: http.MethodGet, path: pathCapture, accept: "application/json"})
		}),
	}
	cancel := &cobra.Command{
		Use:   "cancel",
		Short: "End the running capture now, keeping what it wrote (needs the token)",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.callCapture(cmd, request{method: http.MethodDelete, path: pathCapture})
		}),
	}
	return groupCmd("traffic", "Capture a cluster's traffic to a file, and replay it", capture, status, cancel, a.replayCmd())
}

const envReplayPassword = "SWITCHYARD_REPLAY_PASSWORD"

func (a *app) replayCmd() *cobra.Command {
	var o traffic.ReplayOptions
	var file string
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay a capture file against a MySQL address and compare with the capture",
		Long: `replay runs on this machine: it replays each captured session on its own
connection to --target (a proxy or a server), in captured order, paced by
--speed (0: as fast as possible), logging in as --user with the password in
$` + envReplayPassword + `. With --read-only, statements that may write are
skipped. The report lists, per digest, executions whose error code or row
count differs from the capture, latencies, and a checksum of the replayed
rows (equal checksums of two replays mean equal results). Exit status 1 when
anything differs.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			if file == "" || o.Addr == "" || o.User == "" {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--file, --target and --user are required")}
			}
			if o.Speed < 0 {
				return &exitError{code: exitTrouble, err: fmt.Errorf("--speed %g: must be 0 or more", o.Speed)}
			}
			o.Password = a.getenv(envReplayPassword)
			rep, err := traffic.Replay(cmd.Context(), file, o)
			if err != nil {
				return err
			}
			raw, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			if err := a.show(append(raw, '\n'), func(w io.Writer) { renderReplay(w, rep) }); err != nil {
				return err
			}
			if rep.Mismatches() > 0 || rep.Failed > 0 {
				return &exitError{code: exitNo}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "capture file (traffic-*.jsonl.gz)")
	f.StringVar(&o.Addr, "target", "", "MySQL address to replay against, host:port")
	f.StringVar(&o.User, "user", "", "user every replayed session logs in as")
	f.Float64Var(&o.Speed, "speed", 1, "speed factor: 2 replays twice as fast; 0 as fast as possible")
	f.BoolVar(&o.ReadOnly, "read-only", false, "skip statements that may write")
	return cmd
}

func renderReplay(w io.Writer, r *traffic.Report) {
	fmt.Fprintf(w, "replayed %d of %d commands (%d skipped) from %d sessions of cluster %s against %s in %s; %d mismatches, %d failed sessions\n",
		r.Replayed, r.Commands, r.Skipped, r.Sessions, r.Cluster, r.Target, r.Elapsed, r.Mismatches(), r.Failed)
	for _, e := range r.Errors {
		fmt.Fprintln(w, "  "+e)
	}
	t := newTable(w, "DIGEST", "CAPTURED", "REPLAYED", "SKIPPED", "ERR_DIFF", "ROWS_DIFF", "CAPTURED_MS", "REPLAYED_MS", "STATEMENT")
	for _, d := range r.Digests {
		t.row(shortDigest(d.Digest), fmt.Sprint(d.Captured), fmt.Sprint(d.Replayed), fmt.Sprint(d.Skipped),
			fmt.Sprint(d.ErrorMismatches), fmt.Sprint(d.RowMismatches), msCell(d.CapturedMs), msCell(d.ReplayedMs), cut(d.DigestText, 60))
	}
	t.flush()
	for _, d := range r.Digests {
		if d.Example != "" {
			fmt.Fprintf(w, "%s: %s\n", shortDigest(d.Digest), d.Example)
		}
	}
}

func (a *app) callCapture(cmd *cobra.Command, r request) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	resp, err := c.do(cmd.Context(), r)
	if err != nil {
		return err
	}
	var st api.TrafficCapture
	if err := c.decode(r.path, resp.body, &st); err != nil {
		return err
	}
	return a.show(resp.body, func(w io.Writer) { renderCapture(w, a.now(), &st) })
}

func renderCapture(w io.Writer, now time.Time, st *api.TrafficCapture) {
	t := newTable(w)
	t.row("STATE", st.State)
	t.row("CLUSTER", st.Cluster)
	t.row("FILE", st.File)
	t.row("STARTED", when(now, st.Start))
	if st.State == "running" {
		t.row("UNTIL", st.Until.Local().Format(time.DateTime))
	} else {
		t.row("ENDED", when(now, st.End)+" ("+st.Reason+")")
	}
	t.row("CAPTURED", fmt.Sprint(st.Captured))
	t.row("DROPPED", fmt.Sprint(st.Dropped))
	t.row("BYTES", fmt.Sprint(st.Bytes))
	t.flush()
}
