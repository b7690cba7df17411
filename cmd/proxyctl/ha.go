package main

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

func (a *app) haCmd() *cobra.Command {
	var role string
	leader := &cobra.Command{
		Use:   "leader",
		Short: "Show who leads a role and how to reach it (any node answers)",
		Long: `Show the leader of a role (GET /api/v1/ha/leader): "fleet" by default, or
"prober/<cluster>". Exits 1 when there is no leader, its endpoints are unknown,
or this node cannot reach the fleet's etcd.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var l api.LeaderAnswer
			raw, err := c.getJSON(cmd.Context(), "/api/v1/ha/leader?role="+url.QueryEscape(role), &l)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderLeader(w, l) })
		}),
	}
	leader.Flags().StringVar(&role, "role", "fleet", `role: "fleet" or "prober/<cluster>"`)
	members := &cobra.Command{
		Use:   "members",
		Short: "List the fleet's registered nodes",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var ms []api.MemberAnswer
			raw, err := c.getJSON(cmd.Context(), "/api/v1/ha/members", &ms)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderMembers(w, a.now(), ms) })
		}),
	}
	ha := &cobra.Command{Use: "ha", Short: "Fleet coordination: leaders and members"}
	ha.AddCommand(leader, members)
	return ha
}

func renderLeader(w io.Writer, l api.LeaderAnswer) {
	t := newTable(w, "ROLE", "LEADER", "TERM", "SQL", "API", "SELF", "SERVED-BY", "MODE")
	t.row(l.Role, l.LeaderID, fmt.Sprint(l.Term), l.Endpoints.SQL, l.Endpoints.API, yesNo(l.SelfIsLeader), l.ServedBy, l.Mode)
	t.flush()
}

func renderMembers(w io.Writer, now time.Time, ms []api.MemberAnswer) {
	t := newTable(w, "ID", "STATE", "SQL", "API", "ZONE", "VERSION", "LEASE-TTL", "UP", "ERROR")
	for _, m := range ms {
		state, sql, apiAddr, up := "invalid", "", "", ""
		if m.Valid && m.Endpoints != nil {
			state, sql, apiAddr = m.State, m.Endpoints.SQL, m.Endpoints.API
		}
		if m.StartTime != nil {
			up = age(now, *m.StartTime)
		}
		// A single node has no lease (the API says -1): nothing to show.
		ttl := ""
		if m.LeaseTTL >= 0 {
			ttl = fmt.Sprintf("%ds", m.LeaseTTL)
		}
		t.row(m.ID, state, sql, apiAddr, m.Zone, m.Version, ttl, up, m.Error)
	}
	t.flush()
}
