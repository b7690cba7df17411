package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/pkg/server/api"
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
	return groupCmd("traffic", "Capture a cluster's traffic to a file", capture, status, cancel)
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
