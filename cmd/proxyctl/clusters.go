package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

func (a *app) clustersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "clusters [NAME]",
		Short: "List the backend clusters, or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var clusters []api.Cluster
			var raw []byte
			if len(args) == 1 {
				var one api.Cluster
				raw, err = c.getJSON(cmd.Context(), "/api/v1/clusters/"+url.PathEscape(args[0]), &one)
				clusters = []api.Cluster{one}
			} else {
				raw, err = c.getJSON(cmd.Context(), "/api/v1/clusters", &clusters)
			}
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderClusters(w, clusters) })
		}),
	}
}

func renderClusters(w io.Writer, clusters []api.Cluster) {
	t := newTable(w, "NAME", "STATE", "SOURCE", "BACKENDS", "SESSIONS", "GEN", "LAST-ERROR")
	for _, c := range clusters {
		t.row(c.Name, c.State, c.Source,
			fmt.Sprintf("%d/%d", c.BackendsHealthy, c.BackendsTotal),
			fmt.Sprint(c.Sessions), fmt.Sprint(c.Generation), c.LastError)
	}
	t.flush()
}

func (a *app) backendsCmd() *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "backends [CLUSTER]",
		Short: "List the backends of every cluster, or of one (CLUSTER or --cluster)",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				// Positional, like "clusters NAME"; --cluster stays for scripts.
				if cluster != "" && cluster != args[0] {
					return fmt.Errorf("cluster given twice: %q and --cluster %q", args[0], cluster)
				}
				cluster = args[0]
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			path := "/api/v1/backends"
			if cluster != "" {
				path = "/api/v1/clusters/" + url.PathEscape(cluster) + "/backends"
			}
			var backends []api.Backend
			raw, err := c.getJSON(cmd.Context(), path, &backends)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderBackends(w, backends) })
		}),
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster's backends")
	return cmd
}

func renderBackends(w io.Writer, backends []api.Backend) {
	t := newTable(w, "ID", "HEALTHY", "SESSIONS", "CPU", "MEM", "VERSION", "REASON")
	for _, b := range backends {
		t.row(b.ID, yesNo(b.Healthy), fmt.Sprint(b.Sessions), percent(b.CPU), percent(b.Memory), b.Version, b.Reason)
	}
	t.flush()
}
