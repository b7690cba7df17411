package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

const (
	pathHealth   = "/api/v1/health"
	pathOverride = "/api/v1/health/override"
)

func (a *app) healthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Show whether the proxy is healthy; exit 1 when it is not",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			h, err := a.callHealth(cmd, request{method: http.MethodGet, path: pathHealth})
			if err != nil {
				return err
			}
			if h.Status != api.StatusHealthy {
				return &exitError{code: exitNo}
			}
			return nil
		}),
	}
}

func (a *app) drainCmd() *cobra.Command {
	var reason string
	on := &cobra.Command{
		Use:   "on",
		Short: "Mark the proxy unhealthy so that load balancers stop sending clients",
		Long: `Mark the proxy unhealthy (PUT /api/v1/health/override) so that load
balancers stop sending new clients. Connected clients are not touched.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			body, err := json.Marshal(api.Override{Reason: reason})
			if err != nil {
				return err
			}
			_, err = a.callHealth(cmd, request{
				method: http.MethodPut, path: pathOverride, body: body, contentType: "application/json",
			})
			return err
		}),
	}
	on.Flags().StringVar(&reason, "reason", "", "why, shown in health (default: the proxy's own)")
	off := &cobra.Command{
		Use:   "off",
		Short: "Clear the override set by drain on",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			_, err := a.callHealth(cmd, request{method: http.MethodDelete, path: pathOverride})
			return err
		}),
	}
	return groupCmd("drain", "Take the proxy out of (on) or back into (off) load balancing", on, off)
}

// callHealth sends r to an endpoint that answers a Health document, 503
// included, and prints it.
func (a *app) callHealth(cmd *cobra.Command, r request) (*api.Health, error) {
	c, err := a.api()
	if err != nil {
		return nil, err
	}
	r.accept = "application/json"
	r.ok = []int{http.StatusServiceUnavailable}
	resp, err := c.do(cmd.Context(), r)
	if err != nil {
		return nil, err
	}
	var h api.Health
	err = json.Unmarshal(resp.body, &h)
	if err == nil && h.Status == "" {
		err = errors.New("no status")
	}
	if err != nil {
		if resp.status == http.StatusServiceUnavailable {
			// Not a Health document: something in front of the API.
			return nil, newAPIError(resp.status, resp.body, c.token != "")
		}
		return nil, fmt.Errorf("unexpected answer from %s%s: %w", c.base, r.path, err)
	}
	return &h, a.show(resp.body, func(w io.Writer) { renderHealth(w, &h) })
}

func renderHealth(w io.Writer, h *api.Health) {
	status := h.Status
	if h.UnhealthyReason != "" {
		status += ": " + h.UnhealthyReason
	}
	t := newTable(w)
	t.row("STATUS", status)
	t.row("CONFIG", shortChecksum(h.ConfigChecksum))
	t.flush()
	if len(h.Clusters) > 0 {
		fmt.Fprintln(w)
		names := make([]string, 0, len(h.Clusters))
		for n := range h.Clusters {
			names = append(names, n)
		}
		slices.Sort(names)
		t = newTable(w, "CLUSTER", "STATE")
		for _, n := range names {
			t.row(n, h.Clusters[n])
		}
		t.flush()
	}
	if len(h.Warnings) > 0 {
		fmt.Fprintln(w, "\nWARNINGS")
		for _, m := range h.Warnings {
			fmt.Fprintln(w, "- "+oneLine(m))
		}
	}
}
