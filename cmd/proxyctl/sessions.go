package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard-db/switchyard/lib/api"
)

func (a *app) sessionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sessions",
		Short: "List the client sessions",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			var sessions []api.Session
			raw, err := c.getJSON(cmd.Context(), "/api/v1/sessions", &sessions)
			if err != nil {
				return err
			}
			return a.show(raw, func(w io.Writer) { renderSessions(w, a.now(), sessions) })
		}),
	}
}

func renderSessions(w io.Writer, now time.Time, sessions []api.Session) {
	t := newTable(w, "ID", "USER", "CLUSTER", "BACKEND", "TXN", "SINCE", "CLIENT", "MOVABLE")
	for _, s := range sessions {
		movable := "yes"
		if !s.Migratable {
			movable = "no: " + cell(s.NotMigratableReason)
		}
		t.row(fmt.Sprint(s.ID), s.User, s.Cluster, s.Backend, yesNo(s.InTransaction), age(now, s.Since), s.ClientAddr, movable)
	}
	t.flush()
}
